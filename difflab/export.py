"""``difflab export RUN --to netcdf``: a run as an ArviZ InferenceData netCDF file (extra ``difflab[export]``).

Layout (netCDF4/HDF5 written with h5netcdf; ``arviz.from_netcdf`` and ``xarray.open_datatree`` read it):

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
from pathlib import Path

from difflab.errors import ConfigError

FORMATS = ("netcdf",)


def export(run: Path, out: Path | None, to: str = "netcdf", *, force: bool = False) -> Path:
    if to not in FORMATS:
        raise ConfigError(f"--to: expected one of {', '.join(FORMATS)}, got '{to}'")
    try:
        import h5netcdf
    except ImportError:
        raise ConfigError("difflab export needs h5netcdf: pip install 'difflab[export]'") from None
    import numpy as np

    from difflab.io import read_run

    rec = read_run(run, samples=True, series=True, trajectory=True)
    out = out or default_out(run)
    if out.resolve() == Path(run).resolve():
        raise ConfigError(f"--out: '{out}' is the run file itself")
    if out.exists() and not force:
        raise ConfigError(f"{out}: the file exists; pass --force to overwrite it or --out to write elsewhere")
    traj = np.asarray(rec.trajectory, dtype=np.float64)  # (T, m, d)
    steps = np.asarray(rec.trajectory_step, dtype=np.int64)
    samples = np.asarray(rec.samples, dtype=np.float64)
    T, m, d = traj.shape
    import io

    from difflab.io import write_bytes

    # Built in memory, then written in one go: a full disk or a file-size limit is then a plain
    # OSError of the write (an h5netcdf file whose flush failed retries it when collected: a crash).
    buf = io.BytesIO()
    with h5netcdf.File(buf, "w") as f:
        attrs = {k: v for k, v in rec.attrs.items() if isinstance(v, (str, int, float, bool))}
        attrs.update(params_json=json.dumps(rec.params), summary_json=json.dumps(rec.summary),
                     target_yaml=rec.target_yaml, inference_library="difflab", source_run=str(run))
        for k, v in attrs.items():
            f.attrs[k] = int(v) if isinstance(v, bool) else v
        post = f.create_group("posterior")
        post.dimensions = {"chain": m, "draw": T, "x_dim_0": d}
        _coord(post, "chain", np.arange(m, dtype=np.int64))
        _coord(post, "draw", steps)
        _coord(post, "x_dim_0", np.arange(d, dtype=np.int64))
        post.create_variable("x", ("chain", "draw", "x_dim_0"), data=np.ascontiguousarray(traj.transpose(1, 0, 2)))
        stats = f.create_group("sample_stats")
        stats.dimensions = {"chain": m, "draw": T}
        _coord(stats, "chain", np.arange(m, dtype=np.int64))
        _coord(stats, "draw", steps)
        # per_step values are recorded at steps 1..steps_done: the value of frame step s is v[s - 1]
        ok = (steps >= 1) & (steps <= rec.attrs.get("steps_done", 0))
        for name, v in rec.per_step.items():
            if name == "step":
                continue
            at = np.full(T, np.nan)
            at[ok] = np.asarray(v, dtype=np.float64)[steps[ok] - 1]
            stats.create_variable(name, ("chain", "draw"), data=np.broadcast_to(at, (m, T)).copy())
        fin = f.create_group("difflab_samples")
        fin.dimensions = {"particle": samples.shape[0], "x_dim_0": d}
        _coord(fin, "particle", np.arange(samples.shape[0], dtype=np.int64))
        _coord(fin, "x_dim_0", np.arange(d, dtype=np.int64))
        fin.create_variable("x", ("particle", "x_dim_0"), data=samples)
        met = f.create_group("difflab_metrics")
        mstep = np.asarray(rec.metrics.get("step", []), dtype=np.int64)
        met.dimensions = {"step": len(mstep)}
        _coord(met, "step", mstep)
        for name, v in rec.metrics.items():
            if name != "step":
                met.create_variable(name, ("step",), data=np.asarray(v, dtype=np.float64))
    write_bytes(out, buf.getbuffer())
    return out


def _coord(group, name: str, values) -> None:
    group.create_variable(name, (name,), data=values)


def default_out(run) -> Path:
    """exports/<run name>.nc under the current folder: not beside the run, so that a folder of
    runs holds run files only (``compare runs/*``)."""
    return Path("exports") / Path(run).with_suffix(".nc").name

