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

Stopping: the first Ctrl-C or SIGTERM stops the sweep. No queued run starts; each running run is
interrupted and saved as such (its worker gets SIGINT; an idle worker ignores it); ``run_all``
raises ``SweepStopped`` once they are saved. A worker whose parent died (SIGKILL) interrupts its run
and exits, instead of running on as an orphan.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, replace
from pathlib import Path

from difflab import yamlio
from difflab.errors import ConfigError, DifflabError, suggest
from difflab.run.io import is_finished
from difflab.run.settings import NOT_SETTABLE, options_of, parse_target_sets
from difflab.run.settings import coerce as _coerce

SPEC_KEYS = ("sampler", "set", "grid", "zip")
TARGET = "target_set"  # target_set: {path: value} in set; target_set.PATH: [values] in grid and zip


@dataclass(frozen=True)
class Run:
    index: int
    sampler: str
    args: dict  # the run's options by key, as the CLI would pass them
    varied: dict  # the settings this run takes from grid and zip (for messages)


MAX_RUNS = 100_000  # runs in one spec: each is validated (and its file name made) before any starts


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

    count = len(next(iter(blocks["zip"].values()), [None]))
    for values in blocks["grid"].values():
        count *= len(values)
    if count > MAX_RUNS:  # counted before anything is built: a 10^9-point grid costs nothing
        raise ConfigError(f"{src}: grid and zip: {count:,} runs; expected at most {MAX_RUNS:,} in one spec "
                          f"(split the sweep into several specs)")
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


class SweepStopped(Exception):
    """The sweep was stopped (Ctrl-C or SIGTERM): the runs reported so far are all there is."""


NOT_STARTED = "not started"  # the status of a run a stopping sweep did not start
_WORKER = {"busy": False, "orphan": False}


def _worker_init(plugins) -> None:
    """A sweep worker: the parent's plug-ins; SIGINT ignored while idle (``_run_in_worker`` takes
    it during a run); a watchdog for the parent's death."""
    import signal
    import threading

    from difflab.plugins import load_all

    load_all(plugins)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()


def _watch_parent(parent: int, every_s: float = 0.5) -> None:
    import signal
    import time

    while os.getppid() == parent:
        time.sleep(every_s)
    _WORKER["orphan"] = True
    if not _WORKER["busy"]:
        os._exit(130)
    # The run is saved as interrupted; then the worker exits. One SIGINT a second while it is busy:
    # the first stops the sampling loop, the next the summary (its cost is unbounded; the run is then
    # saved without metrics); the write holds them and ends by itself.
    while _WORKER["busy"]:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1.0)
    os._exit(130)  # the run is saved (busy is cleared after the write): whatever the main thread is doing


def _run_in_worker(sampler: str, args: dict) -> tuple[str, str, str]:
    """``run_one`` in a worker process, interruptible by SIGINT while it runs."""
    import signal

    from difflab.run import sampling as sample_mod

    _WORKER["busy"] = True
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_one(sampler, args)
    except sample_mod.LateSignal as exc:  # arrived after sampling: the finished run was saved
        return exc.run.path, exc.run.status, ""
    except KeyboardInterrupt:  # before sampling began: nothing written
        return "", NOT_STARTED, ""
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _WORKER["busy"] = False
        if _WORKER["orphan"]:
            os._exit(130)


def run_one(sampler: str, args: dict) -> tuple[str, str, str]:
    """Prepare and execute one run in this process: (path, status, error message or '')."""
    from difflab.run import sampling as sample_mod

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
        _run_serial(todo, on_done)
    else:
        _run_pool(todo, on_done, jobs)


def run_until_stopped(todo: list, on_done, *, jobs: int = 1, dask: str | None = None) -> int:
    """``run_all`` with SIGTERM stopping it as Ctrl-C does: 0 if it ran to the end, else the
    signal that stopped it (SIGINT, or SIGTERM: the exit code is then 128 + it)."""
    import signal

    got = []
    previous = signal.signal(signal.SIGTERM, lambda s, f: (got.append(s), signal.default_int_handler(s, f)))
    try:
        run_all(todo, on_done, jobs=jobs, dask=dask)
    except SweepStopped:
        return got[0] if got else signal.SIGINT
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _run_serial(todo: list, on_done) -> None:
    from difflab.run import sampling as sample_mod

    for run, _ in todo:
        try:
            result = run_one(run.sampler, run.args)
        except sample_mod.LateSignal as exc:  # the run finished and was saved; the sweep stops
            on_done(run, (exc.run.path, exc.run.status, ""))
            raise SweepStopped from None
        except KeyboardInterrupt:  # while preparing: nothing of this run was written
            raise SweepStopped from None
        on_done(run, result)
        if result[1] == "interrupted":
            raise SweepStopped


def _result(fut) -> tuple[str, str, str]:
    try:
        return fut.result()
    except Exception as exc:  # noqa: BLE001 -- a worker process died: that run failed, the rest go on
        return _crashed(exc)


def _run_pool(todo: list, on_done, jobs: int) -> None:
    import multiprocessing
    import signal
    import time
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from difflab.plugins import loaded

    # spawn: each worker starts clean (no forked BLAS threads or locks); streams are per run. The
    # workers load the plug-ins this process loaded (--plugin), so their samplers exist there too.
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(loaded(),))
    futures, reported = {}, set()
    try:
        futures = {pool.submit(_run_in_worker, run.sampler, run.args): run for run, _ in todo}
        try:
            for fut in as_completed(futures):
                reported.add(fut)
                on_done(futures[fut], _result(fut))
        except KeyboardInterrupt:
            for fut in futures:
                fut.cancel()  # the queued ones
            running = [f for f in futures if f not in reported and not f.cancelled()]
            # Interrupt the running runs (idle workers ignore SIGINT); again while any is unfinished,
            # for a task handed to a worker just before the stop.
            while not all(f.done() for f in running):
                for child in multiprocessing.active_children():
                    os.kill(child.pid, signal.SIGINT)
                time.sleep(0.2)
            for fut in running:
                on_done(futures[fut], _result(fut))
            raise SweepStopped from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
    from difflab.run import sampling as sample_mod

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
            if is_finished(path):
                skipped.append(str(path))
                continue
            run = replace(run, args={**run.args, "force": True})  # an interrupted run: do it again
        seen.add(path)
        todo.append((run, path))
    return todo, skipped, errors


def describe(run: Run) -> str:
    return ", ".join(f"{k}={v}" for k, v in run.varied.items()) or "fixed settings"
