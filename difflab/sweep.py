"""``difflab sweep SPEC.yaml``: many ``difflab sample`` runs from one spec, in parallel, resumable.

A spec names a sampler and the settings of its command (the ``difflab sample <sampler>`` options,
with ``_`` for ``-``: ``step_size``, ``particles``, ``seed``, ``target``, ``class``...):

    sampler: ula
    set: {target: gaussian, particles: 200, init: target}   # fixed settings
    grid: {step_size: [0.01, 0.02, 0.04], seed: [0, 1]}    # every combination
    zip: {steps: [100, 200], save_every: [1, 2]}           # advanced together, times the grid

Target overrides (as ``--target-set``): ``set: {target_set: {ring.radius: 6}}`` for fixed ones,
``grid: {target_set.ring.radius: [4, 6]}`` (or in ``zip``) for swept ones.

Each run is exactly the run ``difflab sample`` would make with those options (same defaults, same
file name: the name hashes the sampler, target, parameters and seed). Every run is validated before
any starts (a bad one: exit 2, nothing written); runs whose file exists are skipped, so an
interrupted sweep resumes; a run that fails is listed at the end without stopping the others.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path

from difflab import yamlio
from difflab.errors import ConfigError, DifflabError, suggest
from difflab.settings import NOT_SETTABLE, options_of, parse_target_sets
from difflab.settings import coerce as _coerce

SPEC_KEYS = ("sampler", "set", "grid", "zip")
TARGET = "target_set"  # target_set: {path: value} in set; target_set.PATH: [values] in grid and zip


@dataclass(frozen=True)
class Run:
    index: int
    sampler: str
    args: dict  # the run's options by key, as the CLI would pass them
    varied: dict  # the settings this run takes from grid and zip (for messages)


def expand(text: str, src: str) -> list[Run]:
    """The runs of a spec."""
    import yaml

    from difflab.samplers import SAMPLERS

    try:
        doc = yamlio.load(text, src)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{src}: YAML syntax error: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{src}: expected a mapping with keys {', '.join(SPEC_KEYS)}")
    for key in doc:
        if key not in SPEC_KEYS:
            raise ConfigError(f"{src}: {key}: unknown key{suggest(key, SPEC_KEYS)}; expected one of "
                              f"{', '.join(SPEC_KEYS)}")
    sampler = doc.get("sampler")
    if sampler not in SAMPLERS:
        raise ConfigError(f"{src}: sampler: expected one of {', '.join(SAMPLERS)}, got {sampler!r}")
    options = options_of(sampler)
    blocks = {}
    for block in ("set", "grid", "zip"):
        b = doc.get(block) or {}
        if not isinstance(b, dict):
            raise ConfigError(f"{src}: {block}: expected a mapping of option: value, got {b!r}")
        if block == "set" and TARGET in b:  # target_set: {ring.radius: 6} -> target_set.ring.radius: 6
            t = b[TARGET]
            if not isinstance(t, dict):
                raise ConfigError(f"{src}: set.{TARGET}: expected a mapping of dotted path: value, got {t!r}")
            b = {k: v for k, v in b.items() if k != TARGET} | {f"{TARGET}.{k}": v for k, v in t.items()}
        for key, value in b.items():
            if key in NOT_SETTABLE:
                raise ConfigError(f"{src}: {block}.{key}: not settable in a sweep (run files are named by their "
                                  "hash and existing ones are skipped)")
            if key not in options and not key.startswith(TARGET + "."):
                raise ConfigError(f"{src}: {block}.{key}: not an option of difflab sample {sampler}"
                                  f"{suggest(key, [*options, TARGET])}")
            for other, seen in blocks.items():
                if key in seen:
                    raise ConfigError(f"{src}: {block}.{key}: already given in {other}")
            if block != "set" and (not isinstance(value, list) or not value):
                raise ConfigError(f"{src}: {block}.{key}: expected a non-empty list of values, got {value!r}")
        blocks[block] = b
    lengths = {len(v) for v in blocks["zip"].values()}
    if len(lengths) > 1:
        raise ConfigError(f"{src}: zip: the lists must have one length, got lengths "
                          f"{', '.join(f'{k}: {len(v)}' for k, v in blocks['zip'].items())}")

    def arguments(block_of: dict, values: dict) -> tuple[dict, list]:
        """Command arguments (typed) and target overrides of some settings."""
        args, targets = {}, []
        for key, value in values.items():
            if key.startswith(TARGET + "."):
                targets.append((key[len(TARGET) + 1:], value))
            else:
                args[key] = _coerce(src, f"{block_of[key]}.{key}", value, options[key][1])
        return args, targets

    base = {k: default for k, (default, _) in options.items()}
    fixed, fixed_targets = arguments(dict.fromkeys(blocks["set"], "set"), blocks["set"])
    base.update(fixed)
    grid_keys = list(blocks["grid"])
    grid = itertools.product(*(blocks["grid"][k] for k in grid_keys))
    zipped = list(zip(*blocks["zip"].values())) or [()]
    block_of = {k: "grid" for k in grid_keys} | {k: "zip" for k in blocks["zip"]}
    runs = []
    for combo, row in itertools.product(list(grid), zipped):
        varied = dict(zip(grid_keys, combo)) | dict(zip(blocks["zip"], row))
        args, targets = arguments(block_of, varied)
        args = base | args
        args[TARGET] = parse_target_sets(f"{src}: {TARGET}", [*fixed_targets, *targets])
        runs.append(Run(len(runs), sampler, args, varied))
    return runs


def run_one(sampler: str, args: dict) -> tuple[str, str, str]:
    """Prepare and execute one run in this process: (path, status, error message or '')."""
    from difflab import sampling as sample_mod

    opts = sample_mod.options_from_args(sampler, args)
    try:
        spec, target, params, path = sample_mod.prepare(opts)
        run = sample_mod.execute(opts, spec=spec, target=target, params=params, path=path)
    except (DifflabError, OSError) as exc:
        return "", "failed", str(exc)
    return str(path), run.status, ""


def _crashed(exc: BaseException) -> tuple[str, str, str]:
    """A run whose worker died or raised something unexpected: a failure, not the sweep's end."""
    return "", "failed", f"{type(exc).__name__}: {exc}"


def portable(run: Run, path: Path) -> Run:
    """The run with absolute paths (its run file, and the target or --points file if those are
    files), for workers whose working folder is not ours: a Dask cluster sharing the folder."""
    args = dict(run.args, out=path.resolve())
    for key in ("target", "points"):
        if args.get(key) and Path(args[key]).is_file():
            args[key] = str(Path(args[key]).resolve())
    return replace(run, args=args)


def run_all(todo: list, on_done, *, jobs: int = 1, dask: str | None = None) -> None:
    """Run ``todo`` [(run, path)] serially, in ``jobs`` spawned processes, or on a Dask cluster
    (scheduler address, or a scheduler file as dask-jobqueue and dask-mpi write); call
    ``on_done(run, (path, status, message))`` as each finishes, in finishing order."""
    if dask is not None:
        _run_dask(todo, on_done, dask)
    elif jobs == 1 or len(todo) <= 1:
        for run, _ in todo:
            on_done(run, run_one(run.sampler, run.args))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: each worker starts clean (no forked BLAS threads or locks); streams are per run.
        from difflab.plugins import load_all, loaded

        # The workers load the plug-ins this process loaded (--plugin), so their samplers exist there too.
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=load_all, initargs=(loaded(),)) as pool:
            futures = {pool.submit(run_one, run.sampler, run.args): run for run, _ in todo}
            for fut in as_completed(futures):
                try:
                    result = fut.result()
                except Exception as exc:  # noqa: BLE001 -- a worker process died: that run failed, the rest go on
                    result = _crashed(exc)
                on_done(futures[fut], result)


DASK_TIMEOUT_S = 20  # seconds to reach the scheduler before --dask gives up


def connect_dask(address: str):
    """A ``distributed.Client`` for ``--dask``: an address (tcp://host:8786) or a scheduler file."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--dask: needs Dask's distributed scheduler: pip install 'difflab[dask]'") from None
    try:
        if Path(address).is_file():
            return Client(scheduler_file=address, timeout=DASK_TIMEOUT_S)
        return Client(address, timeout=DASK_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"--dask: cannot connect to the scheduler at '{address}': {exc}") from None


def _run_dask(todo: list, on_done, address) -> None:
    from distributed import as_completed

    client = connect_dask(address) if isinstance(address, str) else address
    try:
        futures = {}
        for run, path in todo:
            run = portable(run, path)
            fut = client.submit(run_one, run.sampler, run.args, pure=False, key=f"difflab-{path.stem}")
            futures[fut] = run
        for fut in as_completed(list(futures)):
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 -- a worker died or the task was lost: that run failed
                result = _crashed(exc)
            on_done(futures[fut], result)
    finally:
        if isinstance(address, str):
            client.close()


def preflight(runs: list[Run]):
    """Validate every run before any starts: (to_run, skipped paths, errors, duplicate count)."""
    from difflab import sampling as sample_mod

    todo, skipped, errors, seen = [], [], [], set()
    for run in runs:
        opts = sample_mod.options_from_args(run.sampler, {**run.args, "force": True})
        try:
            _, _, _, path = sample_mod.prepare(opts)  # validates everything; force: we decide below
        except DifflabError as exc:
            errors.append(f"run {run.index} ({describe(run)}): {exc}")
            continue
        if path in seen:  # the same settings twice (e.g. a repeated value): one run
            continue
        if path.is_file():
            if _finished(path):
                skipped.append(str(path))
                continue
            run = replace(run, args={**run.args, "force": True})  # an interrupted run: do it again
        seen.add(path)
        todo.append((run, path))
    return todo, skipped, errors


def _finished(path: Path) -> bool:
    """A run file that holds a finished run (complete or diverged: re-running gives the same)."""
    from difflab.errors import RunFileError
    from difflab.io import read_run

    try:
        return read_run(path).attrs.get("status") in ("complete", "diverged")
    except RunFileError:
        return False


def describe(run: Run) -> str:
    return ", ".join(f"{k}={v}" for k, v in run.varied.items()) or "fixed settings"
