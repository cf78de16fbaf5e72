"""difflab's Python API: everything ``difflab sample``, ``compare`` and the targets do, in process.

    import difflab
    run = difflab.sample("mala", target="gmm", particles=2000, steps=500, seed=1, step_size=0.2)
    run.samples, run.summary["sliced_w2"], run.metrics["step"]
    run.save("runs/mala.h5")                      # the same atomic run file the CLI writes
    rows = difflab.compare([run, difflab.load("runs/ula.h5")])

The same options and seed give the same samples as ``difflab sample``, bit for bit: both go
through ``difflab.run.sampling.prepare`` and ``execute``. Errors are ``difflab.errors.DifflabError``
with the one-line messages the CLI prints.
"""

from __future__ import annotations

from pathlib import Path

from difflab.errors import ConfigError
from difflab.run.io import Run


def _integer(name: str, value, *, optional: bool = False):
    """An integer argument (numpy integers too) as a plain int; None where optional; else one
    ConfigError line (a float, a bool, a string is refused before any work)."""
    import numbers

    if value is None and optional:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and not _numpy_bool(value):
        return int(value)
    raise ConfigError(f"{name}: expected an integer{' or None' if optional else ''}, got {value!r}")


def _numpy_bool(value) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")


def _flag(name: str, value) -> bool:
    if value is True or value is False or _numpy_bool(value):
        return bool(value)
    raise ConfigError(f"{name}: expected True or False, got {value!r}")


def _path(name: str, value, *, optional: bool = False):
    import os

    if value is None and optional:
        return None
    if isinstance(value, (str, os.PathLike)) and str(value):
        return Path(value)
    raise ConfigError(f"{name}: expected a path (str or pathlib.Path){' or None' if optional else ''}, got {value!r}")


def _plain_option(value):
    """A sampler option's value: numpy scalars as Python ones (the CLI's types)."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    return value


def sample(sampler, target="gmm", *, particles: int = 1000, steps: int | None = None, seed: int = 0,
           init: str | None = None, save_every: int | None = None, metrics_every: int | None = None,
           trajectory_particles: int = 100, target_set: dict | None = None, out=None, force: bool = False,
           cache=True, **options) -> Run:
    """Run a sampler on a target and return the ``Run`` in memory (written to ``out`` if given).

    ``sampler``: a registered name (built-in or plug-in), a ``SamplerEntry`` (its options then
    apply), or a sampler object already built on ``target`` (it runs as it is; its scalar fields are
    recorded as the run's parameters; see "Extending difflab"). ``target``: a shipped name, a YAML path, a YAML string,
    a mapping, or a target from ``load_target``. ``options``: the sampler's own options by key
    (``step_size=0.05``, ``solver="heun"``, ``class_="left"`` or ``**{"class": "left"}``).
    ``cache``: the exact-draw floor cache: True (``$DIFFLAB_CACHE_DIR``, else the user cache
    folder), False (compute the floors afresh, store nothing) or a folder.
    """
    from difflab.contracts import SamplerEntry
    from difflab.run import sampling as sample_mod

    particles, steps, seed = _integer("particles", particles), _integer("steps", steps, optional=True), \
        _integer("seed", seed)
    save_every, metrics_every = _integer("save_every", save_every, optional=True), \
        _integer("metrics_every", metrics_every, optional=True)
    trajectory_particles, force = _integer("trajectory_particles", trajectory_particles), _flag("force", force)
    out = _path("out", out, optional=True)
    if init is not None and not isinstance(init, str):
        raise ConfigError(f"init: expected a name (str) or None, got {init!r}")
    if target_set is not None and not isinstance(target_set, dict):
        raise ConfigError(f"target_set: expected a mapping of dotted paths to values, got {target_set!r}")
    if not (cache is True or cache is False or isinstance(cache, (str, Path))):
        raise ConfigError(f"cache: expected True, False or a folder, got {cache!r}")
    if sampler is None or isinstance(sampler, (bytes, int, float, list, dict, tuple)):
        raise ConfigError(f"sampler: expected a sampler's name, a SamplerEntry or a sampler object, got {sampler!r}")
    entry = sampler if isinstance(sampler, (str, SamplerEntry)) else _entry_of_object(sampler)
    name = entry if isinstance(entry, str) else entry.name
    spec_or_ref = _target_ref(target)
    options = {k.rstrip("_") if k == "class_" else k: _plain_option(v) for k, v in options.items()}
    opts = sample_mod.SampleOptions(
        sampler=entry, target=spec_or_ref, particles=particles, steps=steps, seed=seed, init=init,
        out=out, save_every=save_every, metrics_every=metrics_every,
        trajectory_particles=trajectory_particles, force=force, options=options, cache=cache,
        target_set=tuple((target_set or {}).items()))
    spec, tgt, params, path = sample_mod.prepare(opts, default_path=False)
    argv = ["difflab.sample", name, *(f"{k}={v}" for k, v in sorted(options.items()))]
    return sample_mod.execute(opts, spec=spec, target=tgt, params=params, path=path, argv=argv)


def _entry_of_object(obj):
    """A sampler object as a one-off entry: built already, its scalar dataclass fields recorded."""
    import dataclasses

    from difflab.contracts import STEPS, Option, SamplerEntry, init_option
    from difflab.plugins import check_sampler

    name = type(obj).__name__.lower()
    check_sampler(obj, name)
    fields = dataclasses.fields(obj) if dataclasses.is_dataclass(obj) else ()
    values = {f.name: vars(obj)[f.name] for f in fields if isinstance(vars(obj).get(f.name), (bool, int, float, str))}
    options = tuple(Option(k, v, type(v), f"{type(obj).__name__}.{k}") for k, v in values.items())
    init = init_option("prior", help="its start law") if obj.capabilities.diffusion else \
        init_option("normal", "target", help="normal or target draws")
    return SamplerEntry(name, type(obj).__doc__ or name, options=options, build=lambda target, params: obj,
                        steps=STEPS, init=init, mcmc=obj.n_steps is None)


def _target_ref(target):
    """A target object from ``load_target`` stands for the validated file it was built from."""
    from difflab.contracts import DiscreteTarget, Target

    if isinstance(target, (Target, DiscreteTarget)):
        if target.spec is None:
            raise ConfigError("target: this target object was not built from a target file; give its YAML "
                              "(text, a mapping or a path) instead, so the run file can record it")
        return target.spec
    if isinstance(target, Path):
        return str(target)
    if isinstance(target, (str, dict)):
        return target
    raise ConfigError(f"target: expected a shipped name, a path, YAML text, a mapping or a target from "
                      f"difflab.load_target, got {type(target).__name__}")


def load(path) -> Run:
    """Read a run file completely (samples, trajectory, series, summary arrays)."""
    from difflab.run.io import read_run

    return read_run(_path("path", path), everything=True)


def load_target(target="gmm", **target_set):
    """A target object: ``log_prob``, ``score``, ``sample(rng, n)``, ``mean``, ``cov`` and, for the
    continuous ones, the noised law (``noised_log_prob``, ``noised_score``, ``denoiser`` at any
    (alpha, sigma)). ``target`` as in ``sample``; keyword arguments override keys by dotted path
    with ``__`` for ``.`` (``ring__radius=6``), as ``--target-set`` does."""
    from difflab.targets.files import load_target as load

    ref = _target_ref(target)
    overrides = tuple((k.replace("__", "."), v) for k, v in target_set.items())
    return load(ref, overrides)[1]


def compare(runs, metrics=None, *, sort: str | None = None, as_frame: bool = False):
    """One record per run, the numbers ``difflab compare`` prints: the parameters that differ
    between the runs and the final metrics (``metrics``: these summary keys instead). ``runs``:
    ``Run`` objects and/or run-file paths. ``as_frame``: a pandas DataFrame (pandas is optional)."""
    from collections.abc import Iterable

    from difflab.results import analysis as cmp

    if isinstance(runs, (str, Path, Run)) or not isinstance(runs, Iterable):
        raise ConfigError(f"runs: expected a list of Run objects and/or run-file paths, got {runs!r}")
    runs = [r if isinstance(r, Run) else _path("runs", r) for r in runs]
    if metrics is not None and (isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics)):
        raise ConfigError(f"metrics: expected a list of summary keys or None, got {metrics!r}")
    if sort is not None and not isinstance(sort, str):
        raise ConfigError(f"sort: expected a column name or None, got {sort!r}")
    rows = [cmp.row_of(r) if isinstance(r, Run) else cmp.load_rows([r])[0] for r in runs]
    params = cmp.differing_params(rows)
    cols, flat = cmp.flatten(rows, params, metrics)
    if sort:
        flat = cmp.sort_rows(flat, sort, cols)
    records = [{c: d.get(c) for c in cols} | ({"error": d["error"]} if "error" in d else {}) for d in flat]
    if not as_frame:
        return records
    try:
        import pandas as pd
    except ImportError:
        raise ConfigError("as_frame: needs pandas (pip install pandas); without it compare returns records") from None
    return pd.DataFrame.from_records(records, columns=cols)
