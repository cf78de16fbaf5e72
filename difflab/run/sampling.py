"""One ``difflab sample`` run: validate options, build target and sampler, drive, write.

Everything that can be wrong with the input is checked before any work starts, so bad input
writes nothing. Random streams come from ``SeedSequence(seed).spawn(5)``: (initial state,
sampler steps, metrics, the ``--score-error`` field, the error decomposition's estimates), each a
``Generator(SFC64)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from difflab.errors import ConfigError, DifflabError, RunExistsError
from difflab.samplers import entry_of


@dataclass(frozen=True)
class SampleOptions:
    """The options of ``difflab sample <sampler>`` as the user gave them (None = default).

    ``options`` holds the sampler's own options (e.g. step_size, eta, solver), resolved by the
    sampler's registry entry.
    """

    sampler: object  # a registered name (the Python API may give a SamplerEntry)
    target: object = "gmm"  # a shipped name or path; from the API also YAML text, a mapping or a spec
    particles: int = 1000
    steps: int | None = None
    seed: int = 0
    init: str | None = None
    out: Path | None = None
    save_every: int | None = None
    metrics_every: int | None = None
    trajectory_particles: int = 100
    force: bool = False
    options: dict = field(default_factory=dict)
    cache: object = True  # the floor cache: True (the default folder), False (none) or a folder
    target_set: tuple = ()  # ((dotted path, value), ...): --target-set overrides of the target file


COMMON = ("target", "particles", "steps", "seed", "init", "out", "save_every", "metrics_every",
          "trajectory_particles", "force", "target_set")


def options_from_args(sampler: str, args: dict) -> SampleOptions:
    """SampleOptions from a ``difflab sample <sampler>`` command's keyword arguments: the common
    ones become fields, the rest the sampler's own options (the CLI and ``sweep`` both use this)."""
    args = {k: v for k, v in args.items() if k != "quiet"}
    common = {k: args.pop(k) for k in COMMON if k in args}
    return SampleOptions(sampler=sampler, **common, options=args)


def resolve_params(opts: SampleOptions) -> dict:
    """Validate the options and fill in defaults; the result is what the run file records."""
    entry = entry_of(opts.sampler)
    common = {o.name: o for o in entry.all_options if o.name in COMMON} | {"init": entry.init}
    value = {name: o.validate(getattr(opts, name)) for name, o in common.items() if name not in ("target", "out")}
    steps = entry.steps_default(opts.options) if value["steps"] is None else value["steps"]
    init = entry.init.default if value["init"] is None else value["init"]
    params = {
        "particles": value["particles"],
        "steps": steps,
        "init": init,
        "save_every": max(1, steps // 100) if value["save_every"] is None else value["save_every"],
        "metrics_every": max(1, steps // 20) if value["metrics_every"] is None else value["metrics_every"],
        "trajectory_particles": value["trajectory_particles"],
    }
    params.update(entry.resolve_params(opts.options, steps))
    if params.get("decomposition_se", 0) is None:  # recorded only when asked for: fixed budgets otherwise
        del params["decomposition_se"]
    return params


def run_hash(sampler: str, spec, params: dict, seed: int) -> str:
    """Short hash of everything that determines the samples (not the output options)."""
    key = {
        "sampler": sampler,
        "target": spec.key(),
        "params": params,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


IF_EXISTS = ("error", "skip", "overwrite")


def prepare_if_exists(opts: SampleOptions, if_exists: str = "error"):
    """``prepare`` with the command's --if-exists policy: (opts, spec, target, params, path, finished),
    finished True when ``skip`` found a finished run (complete or diverged) at the path; an
    unfinished one (interrupted, unreadable) is run again. ``overwrite`` is --force."""
    import dataclasses

    if if_exists not in IF_EXISTS:
        raise ConfigError(f"--if-exists: expected one of {', '.join(IF_EXISTS)}, got '{if_exists}'")
    if opts.force and if_exists == "skip":
        raise ConfigError("--force: not with --if-exists skip (--force overwrites)")
    if if_exists == "overwrite":
        opts = dataclasses.replace(opts, force=True)
    try:
        return (opts, *prepare(opts), False)
    except RunExistsError:
        if if_exists != "skip":
            raise
    from difflab.run.io import is_finished

    opts = dataclasses.replace(opts, force=True)
    spec, target, params, path = prepare(opts)
    return opts, spec, target, params, path, is_finished(path)


LABEL_MAX = 80  # characters of a run-file name's label: the hash after it tells runs apart anyway
_NOT_LABELLED = ("save_every", "metrics_every", "trajectory_particles")  # output options, not the run's law


def run_label(opts: SampleOptions, params: dict) -> str:
    """A short readable label of what sets this run apart from the sampler's defaults: the
    parameters the user set to a non-default value (output options aside), the target overrides,
    then a non-zero seed, as ``k=v`` joined by
    commas (``step_size=0.2,seed=1``); '' for a default run. Characters other than letters, digits
    and ``._+-=`` become ``_``; cut to LABEL_MAX characters at a parameter boundary (``,+`` marks
    the cut)."""
    import re

    # What the user set (a value that follows from another, e.g. likelihood_points, is not labelled)
    given = {k for k, v in opts.options.items() if v is not None}
    plain = SampleOptions(sampler=opts.sampler)
    default = resolve_params(plain)
    given |= {k for k, mine, theirs in (("particles", opts.particles, plain.particles), ("steps", opts.steps, plain.steps),
                                        ("init", opts.init, plain.init)) if mine != theirs}
    own = [k for k in params if not k.startswith("target.")]  # resolve_params' fixed order, then overrides by name
    parts = [f"{k}={_label_value(params[k])}" for k in own + sorted(set(params) - set(own))
             if k not in _NOT_LABELLED and (k.startswith("target.") or k in given and default.get(k) != params[k])]
    parts += [f"seed={opts.seed}"] if opts.seed != 0 else []
    parts = [re.sub(r"[^A-Za-z0-9._+=-]", "_", p) for p in parts]
    label = ",".join(parts)
    while len(label) > LABEL_MAX and len(parts) > 1:
        parts.pop()
        label = ",".join(parts) + ",+"
    return label[:LABEL_MAX]


def _label_value(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def default_name(opts: SampleOptions, spec, params: dict) -> str:
    """runs/<sampler>-<target>[-<label>]-<hash>.h5's file name: the label (``run_label``) for a
    person, the hash (``run_hash``, of everything that sets the samples) to tell runs apart."""
    name = entry_of(opts.sampler).name
    label = run_label(opts, params)
    return f"{name}-{spec.name}-{label + '-' if label else ''}{run_hash(name, spec, params, opts.seed)}.h5"


def output_path(opts: SampleOptions, spec, params: dict) -> Path:
    path = opts.out or Path("runs") / default_name(opts, spec, params)
    try:
        return _checked_output(path, opts)
    except OSError as exc:  # a name or folder the file system refuses outright (ENAMETOOLONG, ELOOP, ...)
        raise ConfigError(f"--out: cannot use '{str(path)[:60]}{'...' if len(str(path)) > 60 else ''}': "
                          f"{exc.strerror or exc}") from None


def _checked_output(path: Path, opts: SampleOptions) -> Path:
    if path.is_symlink() and not path.exists() and not opts.force:  # a dangling link holds the name
        raise RunExistsError(f"{path}: a symbolic link to nothing ({os.readlink(path)}) holds the name; pass --force "
                             f"to replace the link, or --out to write elsewhere")
    if path.is_file() and not opts.force:
        raise RunExistsError(f"{path}: the run file exists; pass --force (or --if-exists overwrite) to overwrite it, "
                             f"--if-exists skip to keep a finished run, or --out to write elsewhere")
    if path.is_dir():
        raise ConfigError(f"--out: '{path}' is a folder; expected a file name")
    # Fail now, not after the run: the nearest existing folder must be writable.
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not _can_create_in(folder):
        raise ConfigError(f"--out: cannot write '{path}': '{folder}' is not a writable folder")
    # The temporary file's name adds about 40 characters (io.atomic_path): fail now, not at the write.
    longest = NAME_MAX - TEMP_EXTRA
    if len(os.fsencode(path.name)) > longest:
        raise ConfigError(f"--out: the file name '{path.name[:40]}...' is {len(os.fsencode(path.name))} bytes long; "
                          f"expected at most {longest}")
    return path


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created there (tried, then removed: os.access says yes to root even on
    /proc or a read-only mount)."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(prefix=".difflab-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


NAME_MAX, TEMP_EXTRA = 255, 60  # the usual file-name limit; what io.atomic_path's temporary name adds


def check_memory(params: dict, dim: int, components: int = 1) -> None:
    """Refuse a run that would not fit in this machine's memory, before anything is allocated: the
    state, the sampler's few (n, d) work arrays, a mixture's (K, d, n) evaluations and the trajectory."""
    n, frames = params["particles"], params["steps"] // params["save_every"] + 2
    need = 8 * (12 * n * dim + 4 * components * n * dim + frames * params["trajectory_particles"] * dim)
    have = _physical_memory()
    if have and need > have:
        what = f"{n:,} particles in {dim} dimensions" + (f" on {components:,} components" if components > 1 else "")
        raise ConfigError(f"--particles: {what} need about {need / 2**30:,.1f} GiB; this machine has "
                          f"{have / 2**30:,.1f} GiB")


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def load_points(path: str, dim: int):
    """Points for ``--points``: a .npy array (n, dim), or a difflab run file's /samples."""
    import numpy as np

    try:
        if path.endswith(".npy"):
            x = np.load(path, allow_pickle=False)
        else:
            from difflab.run.io import read_run

            x = read_run(path, samples=True).samples
    except (OSError, ValueError, DifflabError) as exc:
        raise ConfigError(f"--points: cannot read '{path}' as a .npy array or a run file: {exc}") from None
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != dim or len(x) == 0:
        raise ConfigError(f"--points: {path}: expected an (n, {dim}) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ConfigError(f"--points: {path}: expected finite values, got NaN or infinity")
    return x


def prepare(opts: SampleOptions, default_path: bool = True):
    """Validate everything (target, options, points, output path) before any work:
    (spec, target, params, path). Without ``--out`` the path is runs/<name>.h5, or None (nothing
    to write) with ``default_path`` off (the Python API)."""
    from difflab.contracts import TargetFeatures, check_compatible
    from difflab.run.driver import check_threads_env
    from difflab.targets.files import load_target

    check_threads_env()
    params = resolve_params(opts)
    spec, target = load_target(opts.target, opts.target_set)
    # Overrides are recorded as parameters too, so compare can group by them (--by target.ring.radius).
    params.update({f"target.{k}": v if isinstance(v, (int, float, str)) else json.dumps(v)
                   for k, v in opts.target_set})
    entry = entry_of(opts.sampler)
    check_compatible(entry, params, TargetFeatures.of(target, spec.source))
    if entry.preflight is not None:
        entry.preflight(target, params, load_points)
    components = None if target.discrete else target.components
    check_memory(params, target.dim, 1 if components is None else components.n_components)
    path = output_path(opts, spec, params) if opts.out is not None or default_path else None
    return spec, target, params, path


def _streams(seed: int):
    """Generators (initial state, steps, metrics, score error, error decomposition, metric floors)
    from SeedSequence(seed).spawn(6). The children are the same whatever the count, so adding
    streams never changes old runs."""
    import numpy as np

    return [np.random.Generator(np.random.SFC64(ss)) for ss in np.random.SeedSequence(seed).spawn(6)]


def _initial(params: dict, target, sampler, rng, n: int):
    """Initial particles (n, d) and their law: (mean, cov) on a continuous target, the pmf over
    the (noisy) states on a discrete one.

    ``normal``: N(0, I); ``target``: exact target draws; ``zero``: the origin (localization);
    ``uniform``: independent uniform values (discrete); ``prior``: the sampler's own start law
    (``start_law``: a Gaussian for the continuous diffusions, the noise's prior for discrete ones).
    """
    import numpy as np

    d = target.dim
    init = params["init"]
    if init == "target":
        return target.sample(rng, n), target.probs if target.discrete else (target.mean, target.cov)
    if init == "uniform":
        x = rng.integers(0, target.K, size=(n, d), dtype=np.int64)
        return x, np.full(target.n_states, 1.0 / target.n_states)
    if init == "normal":
        return rng.standard_normal((n, d)), (np.zeros(d), np.eye(d))
    if init == "zero":
        return np.zeros((n, d)), (np.zeros(d), np.zeros((d, d)))
    if target.discrete:
        return sampler.start_sample(rng, n), sampler.start_law()
    mean, cov = sampler.start_law(params["prior"])
    lam, u = np.linalg.eigh(cov)
    x = mean + rng.standard_normal((n, d)) @ (u * np.sqrt(lam)).T
    return x, (mean, cov)


def execute(opts: SampleOptions, *, spec, target, params: dict, path: Path | None = None, progress=None,
            argv: list | None = None):
    """Run, and write the run file if ``path`` is given; returns the ``Run`` (``difflab.run.io``).

    ``progress``, if given, is called with the number of steps and returns (context manager,
    on_step callback). ``argv``: what the run file records as the command (default sys.argv).
    """

    import numpy as np

    from difflab.plugins import check_sampler
    from difflab.run import driver
    from difflab.run.floors import FloorCache, Judge
    from difflab.run.io import Run, write_run, write_run_new
    from difflab.samplers import is_builtin

    entry = entry_of(opts.sampler)
    name = entry.name
    rng_init, rng_step, rng_metric, rng_score, rng_path, rng_floor = _streams(opts.seed)
    n = params["particles"]
    model, extra_summary = target, None  # model: what the sampler sees, the exact target or a wrong score
    if not target.discrete:
        model, target, extra_summary = _model(entry, target, params, rng_metric, rng_score)
    judge = Judge(target, n, FloorCache.of(opts.cache), rng_metric)
    suite = judge.suite
    plugin = not is_builtin(name)
    sampler = _guarded(plugin, name, "build", lambda: entry.build(model, params))
    if plugin:
        check_sampler(sampler, name)
    x0, law0 = _initial(params, target, sampler, rng_init, n)
    warmup, adapter = entry.warmup(params) if entry.warmup is not None else (0, None)
    steps = sampler.n_steps or params["steps"]
    # Monte Carlo series only where the state lives on the target's space: on a discrete target
    # for the Markov kernel (gibbs), not for the noisy states of discrete diffusion.
    every = params["metrics_every"] if entry.mcmc or not target.discrete else 0
    ctx, on_step = progress(steps) if progress else (contextlib.nullcontext(), None)
    with ctx:
        result = _guarded(plugin, name, "run", lambda: driver.run(
            sampler, x0, rng_step, steps=steps, save_every=params["save_every"],
            trajectory_particles=params["trajectory_particles"], metrics_every=every,
            metric_fn=suite.series if every else None, warmup=warmup, adapter=adapter,
            on_step=on_step))
    # The summary (floors, metrics, exact laws, the error decomposition, a plug-in's hooks) is not
    # held against Ctrl-C/SIGTERM: its cost is unbounded (a user's score may block). A signal there
    # stops it; the run is written at once with its samples, no metrics and status interrupted (run
    # it again to judge it: same seed, same samples). Only the write itself, bounded, is held.
    groups, floor_warnings, stopped = {}, [], False
    try:
        with np.errstate(all="ignore"):  # metrics of a state about to diverge may be inf or nan
            floors, floor_source, floor_warnings = judge.floors(target.sample, rng_floor)
            summary, summary_arrays = _summarise(suite, result, target, params, floors, judge.draws, mcmc=entry.mcmc)
            if target.discrete:
                _discrete_exact_law(sampler, target, law0, result, params, summary)
            else:
                _add_exact_law(sampler, target, law0, result, params, summary)
            if extra_summary is not None:
                summary.update(extra_summary(result.samples, rng_metric, rng_floor, n))
            if (sampler.capabilities.affine or sampler.capabilities.diffusion) and not target.discrete:
                from difflab.maths.decomposition import error_terms, score_error_term

                se = params.get("decomposition_se")
                terms, series = error_terms(sampler, target, law0, rng_path, se)
                summary.update(terms)
                result.per_step.update({k: v[: result.steps_done] for k, v in series.items() if result.steps_done})
                if sampler.capabilities.diffusion:
                    summary.update(score_error_term(sampler, rng_path, se=se))
        if entry.after is not None:
            groups.update(entry.after(sampler, target, law0, params, rng_metric, summary, load_points))
    except KeyboardInterrupt:  # a partial summary would read as a whole one: none at all
        stopped = True
        groups, summary, summary_arrays, floor_source = {}, {}, {}, "none (the summary was interrupted)"
        result.per_step = {k: v for k, v in result.per_step.items() if k not in ("kl_step", "kl_step_se")}
    with _signals_deferred() as late:  # the write, bounded: a Ctrl-C or SIGTERM now waits for the file
        samples, trajectory = result.samples, result.trajectory
        if target.discrete:  # states are integer codes, written as the target's labels (spins -1/+1; masked = NaN)
            samples, trajectory = target.to_labels(samples), target.to_labels(trajectory)
        run = Run(
            path=str(path or ""),
            attrs={
                "sampler": name, "target": spec.name, "seed": opts.seed,
                "status": driver.INTERRUPTED if stopped else result.status,
                "steps_done": result.steps_done, "diverged_step": result.diverged_step,
                "wall_time_s": result.wall_time_s,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "argv": json.dumps(sys.argv if argv is None else argv), "n_particles": params["particles"],
                "dim": samples.shape[1], "floor_source": floor_source,
            },
            params=params, summary=summary, target_yaml=spec.text, target_source=spec.source, samples=samples,
            trajectory=trajectory, trajectory_step=result.trajectory_step,
            metrics={"step": result.metrics_step, **result.metrics},
            per_step={"step": np.arange(1, result.steps_done + 1), **result.per_step} if result.per_step else {},
            summary_arrays=summary_arrays, groups=groups,
        )
        from difflab.run.checks import run_warnings

        stop_note = [("the summary was interrupted: the run holds its samples and no metrics (status interrupted); "
                     "run it again to judge it (the same seed gives the same samples)")] if stopped else []
        run.attrs["warnings"] = json.dumps(floor_warnings + stop_note
                                           + run_warnings(summary, params, run.attrs["status"]))
        if path is not None:
            if opts.force:
                write_run(path, run)
            else:  # the name was free at the start; another writer may have taken it since: never replace
                run.path = str(write_run_new(path, run))
    if late or stopped:
        raise LateSignal(late[0] if late else None, run)
    return run


class LateSignal(KeyboardInterrupt):
    """A Ctrl-C or SIGTERM that arrived after sampling ended: during the summary (``signum`` None:
    the summary was stopped, the run saved as interrupted without metrics) or during the write
    (``signum``: the file was finished first). ``run`` is the run saved (if a path was given)."""

    def __init__(self, signum: int | None, run):
        super().__init__(signum)
        self.signum, self.run = signum, run


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM (main thread only) until the block ends; yields the list of signals
    that arrived. A second Ctrl-C is held too: the file is always finished."""
    import signal
    import threading

    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def hold(signum, frame):
        if not got:
            os.write(2, b"difflab: signal received; finishing the run file first\n")
        got.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield got
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _guarded(plugin: bool, name: str, what: str, fn):
    """fn(); a plug-in's exception (its own code) becomes one PluginError line. Built-in samplers'
    exceptions are bugs of difflab's and keep their traceback."""
    if not plugin:
        return fn()
    from difflab.errors import PluginError

    try:
        return fn()
    except DifflabError:
        raise
    except Exception as exc:  # noqa: BLE001 -- the user's code
        raise PluginError(f"sampler {name} (plug-in): its {what} raised {type(exc).__name__}: {exc}") from None


def _model(entry, target, params: dict, rng_metric, rng_score):
    """(the score the sampler sees, the target the run is judged against, extra summary keys or
    None): a user's score against its reference; else what the entry's own options make of the
    exact target (its ``steer`` hook: a wrong score, guidance, naive reward guidance)."""
    if not target.exact_score:  # a kind: score target: the user's score, judged against its reference
        return target, target.base, None
    if entry.steer is None:
        return target, target, None
    steered = entry.steer(target, params, rng_metric, rng_score)
    return steered.model, steered.judged, steered.summary


def _discrete_exact_law(sampler, target, law0, result, params: dict, summary: dict) -> None:
    """Where the (noisy) state space has at most MAX_EXACT_LAW states: the exact law of the
    sampler's state, propagated by matrix-vector products. Summary: exact_tv and exact_kl of the
    output to the target; series exact_tv against the exact law p_t at each step's time (the
    target for gibbs), where the sampler has a time grid."""
    import numpy as np

    from difflab.maths.metrics import kl, tv
    from difflab.samplers.discrete import MAX_EXACT_LAW, clean_part

    if len(law0) > MAX_EXACT_LAW or result.steps_done == 0:
        return
    every = params["metrics_every"]
    q, steps, series = law0, [], []
    for k in range(result.steps_done + 1):
        if k > 0:
            q = sampler.law_step(q, k - 1)
        if sampler.timed and every and (k % every == 0 or k == result.steps_done):
            steps.append(k)
            series.append(tv(q, sampler.noised_law(k)))
    clean, masked = clean_part(q, target, sampler.n_noisy)
    summary["exact_tv"] = tv(clean, target.probs) + 0.5 * masked
    summary["exact_kl"] = kl(clean, target.probs) if masked < 1e-12 else float("inf")
    summary["exact_kl_target_out"] = kl(target.probs, clean)  # masked mass lies off the target's support
    if not steps:
        return
    if len(result.metrics_step) == 0:
        result.metrics_step = np.array(steps)
    if result.metrics_step.tolist() == steps:
        result.metrics["exact_tv"] = np.array(series)


def _summarise(suite, result, target, params: dict, floors: dict, draws: int, mcmc: bool):
    """Final metrics, their exact-draw floors (``floors``: the metrics on ``draws`` sets of exact
    i.i.d. draws of the same size, mean and standard error; see ``difflab.run.floors``), per-step
    totals or means, MCMC diagnostics."""
    from difflab.maths import metrics

    summary = suite.final(result.samples)
    summary.update(floors)
    summary["floor_draws"] = draws
    if "step_size" in params:
        summary["step_size"] = result.final_params.get("step_size_adapted", params["step_size"])
    for name, series in result.per_step.items():
        if len(series):
            # nfe: the total; posterior_trace, log_z_estimate: the final value; anything else: the mean over steps
            summary[name] = float(series.sum() if name == "nfe" else series[-1] if name in ("posterior_trace", "log_z_estimate")
                                  else series.mean())
    if not target.discrete and target.tilt_log_z is not None and "log_z_estimate" in summary:
        summary["log_z"] = float(target.tilt_log_z)
    summary_arrays = {}
    kept = result.trajectory[len(result.trajectory) // 2 :]  # second half of the saved frames
    if mcmc and kept.shape[0] >= 4 and kept.shape[1] >= 2:
        summary_arrays["ess"] = metrics.ess(kept)
        summary_arrays["split_rhat"] = metrics.split_rhat(kept)
        summary["ess_min"] = float(summary_arrays["ess"].min())
        summary["split_rhat_max"] = float(summary_arrays["split_rhat"].max())
        # the diagnostics ArviZ and Stan report (rank-normalised; Vehtari et al. 2021)
        diagnostics = {"r_hat": metrics.r_hat, "ess_bulk": metrics.ess_bulk, "ess_tail": metrics.ess_tail,
                       "mcse_mean": metrics.mcse_mean}
        summary_arrays.update({name: fn(kept) for name, fn in diagnostics.items()})
        summary["r_hat_max"] = float(summary_arrays["r_hat"].max())
        summary["ess_bulk_min"] = float(summary_arrays["ess_bulk"].min())
        summary["ess_tail_min"] = float(summary_arrays["ess_tail"].min())
        summary["mcse_mean_max"] = float(summary_arrays["mcse_mean"].max())
    return summary, summary_arrays


def _add_exact_law(sampler, target, law0, result, params: dict, summary: dict) -> None:
    """On a Gaussian target, the exact law of the output: exact_kl, exact_w2 (final and series)."""
    import numpy as np

    from difflab.maths import exact

    if not exact.has_exact_law(sampler, target) or result.steps_done == 0:
        return
    every = params["metrics_every"]
    _, _, history = exact.propagate(sampler, law0[0], law0[1], result.steps_done, every=every)
    rows = [exact.exact_metrics(target, m, c) for _, m, c in history]
    summary.update(rows[-1])
    # A series only where the state is itself the sample (not for localization's y_t).
    if not sampler.capabilities.estimate and [k for k, _, _ in history] == result.metrics_step.tolist():
        for key in rows[-1]:
            result.metrics[key] = np.array([r[key] for r in rows])
