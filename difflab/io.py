"""The run-file schema (HDF5, one file per run): its one writer and its one reader.

Schema version 1 (the README's "Run-file schema" section is the user-facing copy):

/                       attributes: difflab_version, schema_version, sampler, target, seed, status
                        (complete | diverged | interrupted), steps_done, diverged_step (-1 if none),
                        wall_time_s, created (ISO 8601, UTC), argv (JSON list), n_particles, dim
/samples                (n, d) float64: the final samples
/config                 attributes: target_yaml (the target file's text, after any --target-set), target_source,
                        params_json (the sampler's resolved parameters as JSON)
/config/params          attributes: the same parameters, one attribute each
/trajectory/positions   (T, m, d) float64, chunked and gzip-compressed: thinned positions of the
                        first m particles; /trajectory/step (T,) int64 their step index (0 = start)
/metrics/step           (S,) int64 steps at which the metrics were evaluated
/metrics/<name>         (S,) float64, one per metric
/metrics/per_step/step  (steps_done,) int64 = 1..steps_done; /metrics/per_step/<name> (steps_done,)
                        values recorded at every step (e.g. MALA's acceptance_rate)
/summary                attributes: final scalar metrics; datasets ess (d,) and split_rhat (d,)
                        where computed
/likelihood             (pflow --likelihood) points (n, d); loglik_ode, loglik_prior,
                        exact_log_p_delta, exact_log_p0 (n,)

Files are written atomically: to a temporary file in the destination folder, then renamed.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from difflab.errors import RunFileError

SCHEMA_VERSION = 1


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = ""):
    """A temporary path beside ``path`` to write to, renamed onto ``path`` when the block ends
    without an error and removed otherwise: a file under its final name is always complete. The
    one atomic-write helper (run files, figures, exports)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_run(path: Path, *, attrs: dict, samples, params: dict, target_yaml: str,
              target_source: str, trajectory, trajectory_step, metrics_step, metrics: dict,
              per_step: dict, summary: dict, summary_arrays: dict, groups: dict | None = None) -> None:
    """Write one run file atomically (temporary file + ``os.replace``)."""
    import h5py
    import numpy as np

    from difflab import __version__

    with atomic_path(Path(path)) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["difflab_version"] = __version__
        f.attrs["schema_version"] = SCHEMA_VERSION
        for k, v in attrs.items():
            f.attrs[k] = v
        ds = f.create_dataset("samples", data=np.asarray(samples, dtype=np.float64))
        ds.attrs["description"] = "final samples, one row per particle (chain)"
        ds.dims[0].label, ds.dims[1].label = "particle", "coordinate"

        cfg = f.create_group("config")
        cfg.attrs["target_yaml"] = target_yaml
        cfg.attrs["target_source"] = target_source
        cfg.attrs["params_json"] = json.dumps(params, sort_keys=True)
        pg = cfg.create_group("params")
        for k, v in params.items():
            pg.attrs[k] = v

        tg = f.create_group("trajectory")
        traj = np.asarray(trajectory, dtype=np.float64)
        chunks = (1,) + traj.shape[1:] if traj.size else None
        ds = tg.create_dataset("positions", data=traj, chunks=chunks, compression="gzip",
                               compression_opts=4, shuffle=True)
        ds.attrs["description"] = "thinned positions of the first particles"
        for i, lab in enumerate(("frame", "particle", "coordinate")):
            ds.dims[i].label = lab
        tg.create_dataset("step", data=np.asarray(trajectory_step, dtype=np.int64))

        mg = f.create_group("metrics")
        mg.create_dataset("step", data=np.asarray(metrics_step, dtype=np.int64))
        for k, v in metrics.items():
            mg.create_dataset(k, data=np.asarray(v, dtype=np.float64))
        ps = mg.create_group("per_step")
        n_steps = len(next(iter(per_step.values()))) if per_step else 0
        ps.create_dataset("step", data=np.arange(1, n_steps + 1, dtype=np.int64))
        for k, v in per_step.items():
            ps.create_dataset(k, data=np.asarray(v, dtype=np.float64))

        sg = f.create_group("summary")
        for k, v in summary.items():
            sg.attrs[k] = v
        for k, v in summary_arrays.items():
            sg.create_dataset(k, data=np.asarray(v, dtype=np.float64))

        for name, datasets in (groups or {}).items():
            g = f.create_group(name)
            for k, v in datasets.items():
                g.create_dataset(k, data=np.asarray(v, dtype=np.float64))


@dataclass
class RunRecord:
    """What the reader returns. ``samples`` is loaded only when asked for."""

    path: str
    attrs: dict
    params: dict
    summary: dict
    target_yaml: str = ""
    target_source: str = ""
    samples: object = None
    trajectory: object = None  # (T, m, d) with trajectory=True
    trajectory_step: object = None  # (T,)
    metrics: dict = field(default_factory=dict)
    per_step: dict = field(default_factory=dict)


def _plain(v):
    """HDF5 attribute -> plain Python (numpy scalars and bytes become int/float/bool/str)."""
    if isinstance(v, bytes):
        return v.decode()
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


def read_run(path, *, samples: bool = False, series: bool = False, trajectory: bool = False) -> RunRecord:
    """Read a run file; raise RunFileError if it is not a readable difflab run."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "schema_version" not in f.attrs or "samples" not in f:
                raise RunFileError(f"{path}: not a difflab run file (no schema_version or /samples)")
            version = int(f.attrs["schema_version"])
            if version > SCHEMA_VERSION:
                raise RunFileError(f"{path}: schema_version {version} is newer than this difflab reads ({SCHEMA_VERSION})")
            rec = RunRecord(
                path=str(path),
                attrs={k: _plain(v) for k, v in f.attrs.items()},
                params=json.loads(_plain(f["config"].attrs["params_json"])),
                summary={k: _plain(v) for k, v in f["summary"].attrs.items()},
                target_yaml=_plain(f["config"].attrs["target_yaml"]),
                target_source=_plain(f["config"].attrs["target_source"]),
            )
            if samples:
                rec.samples = f["samples"][()]
            if trajectory:
                rec.trajectory = f["trajectory/positions"][()]
                rec.trajectory_step = f["trajectory/step"][()]
            if series:
                rec.metrics = {k: v[()] for k, v in f["metrics"].items() if isinstance(v, h5py.Dataset)}
                rec.per_step = {k: v[()] for k, v in f["metrics/per_step"].items()}
            return rec
    except RunFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise RunFileError(f"{path}: not a readable difflab run file ({type(exc).__name__}: {exc})") from None
