"""``difflab export RUN --to netcdf``: a run as an ArviZ InferenceData netCDF file.

Written by the run files' own writer (``difflab.run.io``: h5py, netCDF-4's dimension scales and
``description``/``units`` on every dataset), so it needs nothing beyond difflab's core;
``arviz.from_netcdf`` and ``xarray.open_datatree(path, engine="h5netcdf")`` read it.

/posterior         x (chain, draw, x_dim_0): the saved trajectory — chain = the first m particles
                   (each particle is an independent chain), draw = the saved frames, coordinate
                   ``draw`` = their step numbers (0 = the initial state: discard warm-up as usual).
                   For diffusion samplers the draws are the reverse process's steps, not MCMC draws.
/sample_stats      per-step values averaged over chains (e.g. acceptance_rate) at the saved frames'
                   steps (NaN at step 0), repeated over ``chain`` so ArviZ's (chain, draw) dims hold.
/difflab_samples   x (particle, x_dim_0): the final samples of every particle.
/difflab_metrics   one variable per metric series on the ``step`` coordinate.
root attributes    the run's attributes, and ``params_json``, ``summary_json``, ``target_yaml``,
                   ``inference_library`` = difflab, ``source_run`` (the run file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from difflab.errors import ConfigError

FORMATS = ("netcdf",)


def export(run: Path, out: Path | None, to: str = "netcdf", *, force: bool = False) -> Path:
    if to not in FORMATS:
        raise ConfigError(f"--to: expected one of {', '.join(FORMATS)}, got '{to}'")
    import h5py

    from difflab.run.io import atomic_path, h5_writing, read_run

    rec = read_run(run, samples=True, series=True, trajectory=True)
    out = out or default_out(run)
    if out.resolve() == Path(run).resolve():
        raise ConfigError(f"--out: '{out}' is the run file itself")
    if out.exists() and not force:
        raise ConfigError(f"{out}: the file exists; pass --force to overwrite it or --out to write elsewhere")
    with atomic_path(out) as tmp, h5_writing(tmp, lambda p: h5py.File(p, "w"), size_hint=os.path.getsize(run)) as f:
        _fill(f, rec, run)
    return out


def _fill(f, rec, run) -> None:
    import numpy as np

    from difflab.run.io import scale, variable

    attrs = {k: v for k, v in rec.attrs.items() if isinstance(v, (str, int, float, bool))}
    attrs.update(params_json=json.dumps(rec.params), summary_json=json.dumps(rec.summary),
                 target_yaml=rec.target_yaml, inference_library="difflab", source_run=str(run))
    for k, v in attrs.items():
        f.attrs[k] = int(v) if isinstance(v, bool) else v
    traj = np.asarray(rec.trajectory, dtype=np.float64)  # (T, m, d)
    steps = np.asarray(rec.trajectory_step, dtype=np.int64)
    samples = np.asarray(rec.samples, dtype=np.float64)
    T, m, d = traj.shape
    chain_doc, draw_doc = "chain = one of the first m particles", "the saved frame's step (0 = the initial state)"

    post = f.create_group("posterior")
    dims = (scale(post, "chain", np.arange(m), chain_doc), scale(post, "draw", steps, draw_doc),
            scale(post, "x_dim_0", np.arange(d), "coordinate index"))
    variable(post, "x", np.ascontiguousarray(traj.transpose(1, 0, 2)), dims, "the saved trajectory")

    stats = f.create_group("sample_stats")
    dims = (scale(stats, "chain", np.arange(m), chain_doc), scale(stats, "draw", steps, draw_doc))
    # per_step values are recorded at steps 1..steps_done: the value of frame step s is v[s - 1]
    ok = (steps >= 1) & (steps <= rec.attrs.get("steps_done", 0))
    for name, v in rec.per_step.items():
        if name == "step":
            continue
        at = np.full(T, np.nan)
        at[ok] = np.asarray(v, dtype=np.float64)[steps[ok] - 1]
        variable(stats, name, np.broadcast_to(at, (m, T)).copy(), dims, f"{name} at the frame's step (mean over chains)")

    fin = f.create_group("difflab_samples")
    dims = (scale(fin, "particle", np.arange(samples.shape[0]), "particle (chain) index"),
            scale(fin, "x_dim_0", np.arange(d), "coordinate index"))
    variable(fin, "x", samples, dims, "final samples, one row per particle")

    met = f.create_group("difflab_metrics")
    at = scale(met, "step", np.asarray(rec.metrics.get("step", []), dtype=np.int64), "the metrics' steps")
    for name, v in rec.metrics.items():
        if name != "step":
            variable(met, name, np.asarray(v, dtype=np.float64), (at,), f"{name} at each metrics step")


def default_out(run) -> Path:
    """exports/<run name>.nc under the current folder: not beside the run, so that a folder of
    runs holds run files only (``compare runs/*``)."""
    return Path("exports") / Path(run).with_suffix(".nc").name

