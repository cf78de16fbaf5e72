"""The run-file schema (HDF5, one file per run): its one writer and its one reader.

Schema version 2 (the README's "Run-file schema" section is the user-facing copy). Every dataset
has ``description`` and ``units`` attributes and every axis is an HDF5 dimension scale, as netCDF-4
lays them out, so ``xarray.open_datatree(path, engine="h5netcdf")`` gives labelled arrays:

/                       attributes: difflab_version, schema_version, sampler, target, seed, status
                        (complete | diverged | interrupted), steps_done, diverged_step (-1 if none),
                        wall_time_s, created (ISO 8601, UTC), argv (JSON list), n_particles, dim,
                        warnings (JSON list of the run's warning lines)
/particle, /coordinate  (n,), (d,) int64 indices: the dimension scales of the root
/samples                (particle, coordinate) float64: the final samples
/config                 attributes: target_yaml (the target file's text, after any --target-set), target_source,
                        params_json (the sampler's resolved parameters as JSON)
/config/params          attributes: the same parameters, one attribute each
/trajectory/positions   (step, trajectory_particle, coordinate) float64, chunked and gzip-compressed:
                        thinned positions of the first m particles; /trajectory/step (T,) int64 their
                        step index (0 = start), /trajectory/trajectory_particle (m,) their index
/metrics/step           (S,) int64 steps at which the metrics were evaluated
/metrics/<name>         (step,) float64, one per metric
/per_step/step          (steps_done,) int64 = 1..steps_done; /per_step/<name> (step,) values recorded
                        at every step (e.g. MALA's acceptance_rate)
/summary                attributes: final scalar metrics; datasets (coordinate,): r_hat, ess_bulk,
                        ess_tail, mcse_mean, ess, split_rhat where computed
/likelihood             (pflow --likelihood) /likelihood/point (n,); points (point, coordinate);
                        loglik_ode, loglik_prior, exact_log_p_delta, exact_log_p0 (point,)

Schema version 1 (read too): no dimension scales or /particle, /coordinate; per-step values under
/metrics/per_step.

Files are written atomically: to a temporary file in the destination folder, then renamed.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from difflab.errors import RunFileError

SCHEMA_VERSION = 2
READS = (1, 2)  # schema 1: no dimension scales, per-step values under /metrics/per_step


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "", *, replace: bool = True):
    """A temporary path beside ``path`` to write to, renamed onto ``path`` when the block ends
    without an error and removed otherwise: a file under its final name is always complete. The
    one atomic-write helper (run files, figures, exports).

    With ``replace=False`` the final name is claimed without ever replacing a file: a hard link,
    which fails if the name exists (atomic, so of concurrent writers exactly one gets it); if
    another process took the name meanwhile, ``FileExistsError`` is raised (and the temporary
    file removed): ``write_run_new`` then writes under the next free name."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    # Created exclusively under an unpredictable name (mkstemp: O_CREAT | O_EXCL), so a link planted
    # in a shared folder under a guessable name cannot redirect the write. The name also carries
    # this host and process, so a later writer can tell a dead process's leftover.
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=f".tmp{suffix}",
                                dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp made it 0600; the final file gets what any Unix tool's would: 0666 less the umask
        os.chmod(tmp, 0o666 & ~_umask())
        if replace:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    """The process's umask, read without changing it (Linux: /proc), else by setting it back."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def _host() -> str:
    import re
    import socket

    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


_HOST = _host()


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files a killed writer of ``path`` left (SIGKILL skips every cleanup):
    only those of this host whose process is gone, so a live writer's file (on this machine or
    another sharing the folder) is never touched."""
    import glob
    import re

    pattern = re.compile(rf"^\.{re.escape(path.name)}\.{_HOST}-(\d+)\.[^.]+\.tmp")
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.{_HOST}-*.tmp*"):
        match = pattern.match(leftover.name)
        if match and not _alive(int(match.group(1))):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process, or not a pid we can ask about: leave it
    return True


def _link_new(tmp: Path, path: Path) -> None:
    """Give ``tmp``'s complete file the name ``path`` only if that name is free (then drop ``tmp``)."""
    try:
        os.link(tmp, path)  # FileExistsError if taken: never replaces
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: exclusive create, then the rename
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.close(fd)
        os.replace(tmp, path)
        return
    tmp.unlink()


def write_run_new(path: Path, run: Run) -> Path:
    """Write a run file under ``path`` without replacing anything: if another writer took the name
    while this run ran, under the first free ``<stem>-<k><suffix>`` beside it (k = 1, 2, ...).
    Returns the name written; the result is never lost and no other file is overwritten."""
    path = Path(path)
    for k in range(10_000):
        target = path if k == 0 else path.with_name(f"{path.stem}-{k}{path.suffix}")
        try:
            write_run(target, run, replace=False)
            return target
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: no free name beside it")


def write_run(path: Path, run: Run, *, replace: bool = True) -> None:
    """Write one run file atomically (``atomic_path``; ``replace=False``: never over an existing file).

    A failed write (a full disk, a file-size limit) raises one ``OSError`` whose message is one
    line; the half-written temporary is closed quietly and removed, never left or renamed."""
    import h5py

    with atomic_path(Path(path), replace=replace) as tmp, \
            h5_writing(tmp, lambda p: h5py.File(p, "w"), size_hint=_array_bytes(run)) as f:
        _fill(f, run)


def _array_bytes(run: Run) -> int:
    """The bytes of a run's arrays: about the size of its file."""
    import numpy as np

    def size(v) -> int:
        if isinstance(v, np.ndarray):
            return v.nbytes
        return sum(map(size, v.values())) if isinstance(v, dict) else 0

    return sum(size(v) for v in vars(run).values())


def write_bytes(path: Path, data) -> None:
    """Write ``data`` to ``path`` atomically (``atomic_path``), never through a link planted at the
    temporary name; a failed write is a plain one-line OSError."""
    with atomic_path(Path(path)) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | _NOFOLLOW)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)


@contextlib.contextmanager
def h5_writing(tmp: Path, open_file, size_hint: int = 0):
    """An HDF5 file being written to ``tmp``. A failed write (a full disk, a file-size limit) raises
    one ``OSError`` with a one-line message and leaves no open file behind.

    A file of at most ``IMAGE_BYTES`` (by ``size_hint``, the bytes its arrays hold) is built in
    memory (h5py's core driver, nothing on disk) and its image written to ``tmp`` by a plain write
    and fsync: the HDF5 library never sees a failed write. (When a write fails under it, as on a
    disk that fills mid-file, its metadata cache is left inconsistent and closing or even freeing
    the file can crash the process: measured, a segfault in some runs on a full tmpfs.) A larger
    file is written through HDF5 (``open_file(tmp)``, h5py) and closed quietly on failure."""
    if size_hint <= IMAGE_BYTES:
        yield from _h5_image(tmp)
        return
    try:
        f = open_file(tmp)
    except OSError as exc:
        raise _os_error(exc) from None
    try:
        yield f
    except BaseException as exc:
        with contextlib.suppress(Exception):
            f.close()
        if isinstance(exc, (OSError, RuntimeError)):  # h5py reports write failures as either
            raise _os_error(exc) from None
        raise
    try:
        f.close()  # the final flush can fail as well
    except (OSError, RuntimeError) as exc:
        raise _os_error(exc) from None


IMAGE_BYTES = 256 << 20  # files up to this size are built in memory, then written in one go
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # not on every platform


def _h5_image(tmp: Path):
    import h5py

    f = h5py.File(tmp, "w", driver="core", backing_store=False)  # in memory: tmp only names it
    try:
        yield f
        f.flush()
        image = f.id.get_file_image()
    finally:
        with contextlib.suppress(Exception):
            f.close()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | _NOFOLLOW)
        with os.fdopen(fd, "wb") as fh:
            fh.write(image)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise _os_error(exc) from None


def _os_error(exc: BaseException) -> OSError:
    """A write failure as an OSError with a one-line message: the system's text for its errno (h5py
    puts the errno in its message: "errno = 28"), else the first line of the message."""
    import re

    code = exc.errno if isinstance(exc, OSError) else None
    found = re.search(r"errno = (\d+)", str(exc))
    code = code or (int(found.group(1)) if found else None)
    lines = str(exc).strip().splitlines()
    return OSError(code, os.strerror(code) if code else (lines[0] if lines else type(exc).__name__))


# What each dataset holds (its ``description`` attribute); metric series and per-step values are
# described by name (the README's metric table defines each).
_DESCRIPTIONS = {
    "particle": "particle (chain) index",
    "coordinate": "coordinate index of the target's space",
    "samples": "final samples, one row per particle (chain)",
    "trajectory/step": "the step of each saved frame (0 = the initial state)",
    "trajectory/trajectory_particle": "index of a particle whose path is saved (the first m particles)",
    "trajectory/positions": "thinned positions of the first particles",
    "metrics/step": "the steps at which the metric series were evaluated",
    "per_step/step": "step number, 1 to steps_done",
    "likelihood/point": "index of a point whose log-likelihood was computed",
    "likelihood/points": "the points (--points, or exact target draws)",
    "summary/r_hat": "rank-normalised split R-hat per coordinate (ArviZ's r_hat)",
    "summary/ess_bulk": "bulk effective sample size per coordinate",
    "summary/ess_tail": "tail effective sample size per coordinate",
    "summary/mcse_mean": "Monte Carlo standard error of the mean per coordinate",
    "summary/ess": "effective sample size per coordinate (Geyer, not rank-normalised)",
    "summary/split_rhat": "split R-hat per coordinate (BDA3, not rank-normalised)",
}


def scale(group, name: str, values, description: str):
    """A netCDF-4 coordinate variable inside HDF5: a 1-D dataset made an HDF5 dimension scale (the
    dimension ``name`` of its group), with ``description`` and ``units``. xarray (engine h5netcdf)
    reads the datasets attached to it as labelled by it."""
    import numpy as np

    ds = group.create_dataset(name, data=np.asarray(values))
    ds.attrs["description"], ds.attrs["units"] = description, "1"
    ds.make_scale(name)
    return ds


def variable(group, name: str, values, dims: tuple, description: str, **create):
    """A netCDF-4 variable inside HDF5: a dataset with ``description`` and ``units`` whose every
    axis is attached to a dimension scale (``dims``, from ``scale``)."""
    import numpy as np

    ds = group.create_dataset(name, data=np.asarray(values), **create)
    ds.attrs["description"], ds.attrs["units"] = description, "1"
    for axis, dim in enumerate(dims):
        ds.dims[axis].attach_scale(dim)
    return ds


def _fill(f, run: Run) -> None:
    import numpy as np

    from difflab._version import __version__

    f.attrs["difflab_version"] = __version__
    f.attrs["schema_version"] = SCHEMA_VERSION
    for k, v in run.attrs.items():
        if k not in ("difflab_version", "schema_version"):
            f.attrs[k] = v
    samples = np.asarray(run.samples, dtype=np.float64)
    particle = scale(f, "particle", np.arange(samples.shape[0]), _DESCRIPTIONS["particle"])
    coordinate = scale(f, "coordinate", np.arange(samples.shape[1]), _DESCRIPTIONS["coordinate"])
    variable(f, "samples", samples, (particle, coordinate), _DESCRIPTIONS["samples"])

    cfg = f.create_group("config")
    cfg.attrs["target_yaml"] = run.target_yaml
    cfg.attrs["target_source"] = run.target_source
    cfg.attrs["params_json"] = json.dumps(run.params, sort_keys=True)
    pg = cfg.create_group("params")
    for k, v in run.params.items():
        pg.attrs[k] = v

    tg = f.create_group("trajectory")
    traj = np.asarray(run.trajectory, dtype=np.float64)
    chunks = (1,) + traj.shape[1:] if traj.size else None
    frames = scale(tg, "step", np.asarray(run.trajectory_step, dtype=np.int64), _DESCRIPTIONS["trajectory/step"])
    kept = scale(tg, "trajectory_particle", np.arange(traj.shape[1]), _DESCRIPTIONS["trajectory/trajectory_particle"])
    variable(tg, "positions", traj, (frames, kept, coordinate), _DESCRIPTIONS["trajectory/positions"],
             chunks=chunks, compression="gzip", compression_opts=4, shuffle=True)

    mg = f.create_group("metrics")
    at = scale(mg, "step", np.asarray(run.metrics.get("step", []), dtype=np.int64), _DESCRIPTIONS["metrics/step"])
    for k, v in run.metrics.items():
        if k != "step":
            variable(mg, k, np.asarray(v, dtype=np.float64), (at,), f"{k} at each metrics step")
    ps = f.create_group("per_step")
    per_step = {k: v for k, v in run.per_step.items() if k != "step"}
    n_steps = len(next(iter(per_step.values()))) if per_step else 0
    steps = scale(ps, "step", np.arange(1, n_steps + 1, dtype=np.int64), _DESCRIPTIONS["per_step/step"])
    for k, v in per_step.items():
        variable(ps, k, np.asarray(v, dtype=np.float64), (steps,), f"{k} recorded at every step")

    sg = f.create_group("summary")
    for k, v in run.summary.items():
        sg.attrs[k] = v
    for k, v in run.summary_arrays.items():
        variable(sg, k, np.asarray(v, dtype=np.float64), (coordinate,), _DESCRIPTIONS.get(f"summary/{k}", k))

    for name, datasets in run.groups.items():  # likelihood: points (n, d) and (n,) values
        g = f.create_group(name)
        n = len(next(iter(datasets.values())))
        point = scale(g, "point", np.arange(n), _DESCRIPTIONS["likelihood/point"])
        for k, v in datasets.items():
            v = np.asarray(v, dtype=np.float64)
            variable(g, k, v, (point, coordinate)[: v.ndim], _DESCRIPTIONS.get(f"{name}/{k}", f"{k} of each point"))


@dataclass
class Run:
    """A run in memory: what ``difflab.sample`` returns and ``difflab.load`` reads, the contents of
    one run file. ``metrics`` and ``per_step`` hold their ``step`` arrays under the key "step".
    Arrays are loaded only when asked for by ``read_run`` (``difflab.load`` reads everything)."""

    path: str
    attrs: dict
    params: dict
    summary: dict
    target_yaml: str = ""
    target_source: str = ""
    samples: object = None  # (n, d)
    trajectory: object = None  # (T, m, d) with trajectory=True
    trajectory_step: object = None  # (T,)
    metrics: dict = field(default_factory=dict)
    per_step: dict = field(default_factory=dict)
    summary_arrays: dict = field(default_factory=dict)  # r_hat, ess_bulk, ess_tail, mcse_mean, ess, split_rhat (d,)
    groups: dict = field(default_factory=dict)  # e.g. likelihood: {name: array}

    @property
    def status(self) -> str:
        return self.attrs.get("status", "")

    @property
    def steps_done(self) -> int:
        return self.attrs.get("steps_done", 0)

    def save(self, path, *, force: bool = False) -> Path:
        """Write the run file (atomically); an existing file only with ``force``."""
        from difflab.errors import RunExistsError

        path = Path(path)
        try:
            write_run(path, self, replace=force)  # without force, never over a file (even one made meanwhile)
        except FileExistsError:
            raise RunExistsError(f"{path}: the run file exists; pass force=True to overwrite it") from None
        self.path = str(path)
        return path

    def to_xarray(self):
        """An ``xarray.Dataset``: samples (particle, coordinate), trajectory (frame, particle,
        coordinate) with its steps, the metric series on ``metric_step``, the per-step values on
        ``step``; attributes: the run's, its parameters and summary as JSON. Needs xarray."""
        try:
            import xarray as xr
        except ImportError:
            raise RunFileError("Run.to_xarray needs xarray: pip install xarray") from None
        import numpy as np

        data = {"samples": (("particle", "coordinate"), np.asarray(self.samples))}
        coords = {}
        if self.trajectory is not None:
            data["trajectory"] = (("frame", "particle_kept", "coordinate"), np.asarray(self.trajectory))
            coords["frame_step"] = ("frame", np.asarray(self.trajectory_step))
        coords["metric_step"] = np.asarray(self.metrics.get("step", []))
        data.update({k: ("metric_step", np.asarray(v)) for k, v in self.metrics.items() if k != "step"})
        coords["step"] = np.asarray(self.per_step.get("step", np.arange(1, self.steps_done + 1)))
        data.update({f"per_step_{k}": ("step", np.asarray(v)) for k, v in self.per_step.items() if k != "step"})
        attrs = {k: v for k, v in self.attrs.items() if isinstance(v, (str, int, float))}
        attrs.update(params_json=json.dumps(self.params), summary_json=json.dumps(self.summary),
                     target_yaml=self.target_yaml)
        return xr.Dataset(data, coords=coords, attrs=attrs)

    def to_inference_data(self):
        """An ArviZ ``InferenceData`` in the layout ``difflab export`` writes (posterior x (chain,
        draw, x_dim_0) from the saved trajectory: chain = the kept particles, draw = the frames).
        Needs ArviZ."""
        try:
            import arviz as az
        except ImportError:
            raise RunFileError("Run.to_inference_data needs ArviZ: pip install arviz") from None
        import numpy as np

        traj = np.asarray(self.trajectory, dtype=np.float64)
        steps = np.asarray(self.trajectory_step, dtype=np.int64)
        m = traj.shape[1]
        ok = (steps >= 1) & (steps <= self.steps_done)
        stats = {}
        for name, v in self.per_step.items():
            if name != "step":
                at = np.full(len(steps), np.nan)
                at[ok] = np.asarray(v, dtype=np.float64)[steps[ok] - 1]
                stats[name] = np.broadcast_to(at, (m, len(steps))).copy()
        return az.from_dict(posterior={"x": traj.transpose(1, 0, 2)}, sample_stats=stats or None,
                            coords={"draw": steps}, attrs={"inference_library": "difflab",
                                                           "sampler": self.attrs.get("sampler", "")})


def _plain(v):
    """HDF5 attribute -> plain Python (numpy scalars and bytes become int/float/bool/str)."""
    if isinstance(v, bytes):
        return v.decode()
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


# The root attributes difflab writes, by type: a reader trusts each one present to be of its type.
_ROOT_TYPES = {"sampler": str, "target": str, "status": str, "created": str, "argv": str, "floor_source": str,
               "warnings": str, "difflab_version": str, "seed": int, "steps_done": int, "diverged_step": int,
               "n_particles": int, "dim": int, "schema_version": int, "wall_time_s": (int, float)}


def _not_schema(path, what: str):
    raise RunFileError(f"{path}: {what}; not a difflab run file of schema {SCHEMA_VERSION}")


def _check_shapes(f, path, root: dict, config: dict, summary: dict) -> None:
    """The schema's shapes and types, before anything uses them (a crafted file fails here, in one line)."""
    import h5py

    expect = {"samples": 2, "trajectory/positions": 3, "trajectory/step": 1, "metrics/step": 1}
    for name, ndim in expect.items():
        obj = f.get(name)
        present = name == "samples" or obj is not None  # /samples is required, the rest optional
        if present and (not isinstance(obj, h5py.Dataset) or obj.ndim != ndim or obj.dtype.kind not in "fiu"):
            _not_schema(path, f"/{name} is not a {ndim}-D numeric array")
    for key, kind in _ROOT_TYPES.items():
        if key in root and (not isinstance(root[key], kind) or isinstance(root[key], bool)):
            _not_schema(path, f"/ attribute {key} is not {'text' if kind is str else 'a number'}")
    for key in ("params_json", "target_yaml", "target_source"):
        if not isinstance(config.get(key), str):
            _not_schema(path, f"/config attribute {key} is missing or not text")
    for key, value in summary.items():
        if not isinstance(value, (int, float)):
            _not_schema(path, f"/summary attribute {key!r} is not a number")


def _printable(value):
    """Text from a run file with control characters (terminal escape sequences, newlines, carriage
    returns) replaced by U+FFFD, in keys and values alike: whatever a reader prints of it (show,
    compare's table and CSV, messages) cannot drive the terminal. difflab writes none there."""
    import re  # (its compiled patterns are cached)

    if isinstance(value, str):
        return re.sub(r"[\x00-\x1f\x7f-\x9f]", "\ufffd", value)
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    return value


def _check_arrays(rec: Run, path) -> None:
    """The arrays read agree with each other as the schema says: a metric per metrics step, a per-step
    value per step, a trajectory frame per frame step, a summary array per coordinate."""
    d = rec.samples.shape[1] if rec.samples is not None else None
    if rec.trajectory is not None and (rec.trajectory.shape[0] != len(rec.trajectory_step)
                                       or (d is not None and rec.trajectory.shape[2] != d)):
        _not_schema(path, "/trajectory/positions does not match /trajectory/step and the coordinates")
    for name, table, axis in (("metrics", rec.metrics, "step"), ("per_step", rec.per_step, "step")):
        n = len(table[axis]) if axis in table and table[axis].ndim == 1 else None
        for k, v in table.items():
            if v.ndim != 1 or v.dtype.kind not in "fiub" or (n is not None and len(v) != n):
                _not_schema(path, f"/{name}/{k} is not one number per step")
    for k, v in rec.summary_arrays.items():
        if v.ndim != 1 or (d is not None and len(v) != d):
            _not_schema(path, f"/summary/{k} is not one number per coordinate")
    for g, datasets in rec.groups.items():
        lengths = {v.shape[0] if v.ndim else -1 for v in datasets.values()}
        if len(lengths) > 1 or -1 in lengths:
            _not_schema(path, f"/{g} holds arrays of different lengths")


def _attributes(f, name: str, path) -> dict:
    """The attributes of group ``name`` as plain Python values, each checked from its header before
    its value is read (a crafted type or a huge size is one RunFileError line, not an allocation)."""
    import h5py
    from h5py import h5a

    group = f if name == "/" else f.get(name)
    where = "/" if name == "/" else f"/{name}"
    if not isinstance(group, h5py.Group):
        raise RunFileError(f"{path}: {where} is missing; not a difflab run file of schema {SCHEMA_VERSION}")
    out = {}
    for index in range(h5a.get_num_attrs(group.id)):
        attr = h5a.open(group.id, index=index)
        key = attr.name.decode(errors="replace")
        problem = _type_problem(attr.get_type(), strings=True)
        if not problem and (attr.get_storage_size() > MAX_ATTRIBUTE_BYTES
                            or attr.get_space().get_simple_extent_npoints() > MAX_ATTRIBUTE_BYTES):
            problem = f"larger than {MAX_ATTRIBUTE_BYTES >> 20} MiB"
        if not problem:  # a variable-length string's size shows only once read (it is in the file, so bounded)
            out[key] = _plain(group.attrs[key])
            if isinstance(out[key], str) and len(out[key]) > MAX_ATTRIBUTE_BYTES:
                problem = f"larger than {MAX_ATTRIBUTE_BYTES >> 20} MiB"
        if problem:
            raise RunFileError(f"{path}: attribute {key!r} of {where} is {problem}; difflab reads only run files "
                               f"as it writes them")
    return out


_SCHEMA_GROUPS = ("config", "trajectory", "metrics", "per_step", "summary")  # the rest: extra groups (likelihood)
MAX_OBJECTS = 10_000  # a run file holds a few dozen; more (or a cycle of hard links) is not one
MAX_ATTRIBUTE_BYTES = 4 << 20  # the largest attribute difflab writes is the target's YAML (kilobytes)
MAX_JSON_DEPTH = 64  # params_json is a flat mapping; deeper nesting is crafted
# What a file may declare in all its datasets: difflab's gzip trajectories compress float64 by ~1.1-3x,
# never by 1,000x; a dataset declared huge and never written (read back as fill values) exceeds this.
DECLARED_PER_FILE_BYTE = 1_100
DECLARED_SLACK = 64 << 20
def _type_problem(tid, *, strings: bool) -> str | None:
    """Why an HDF5 type (a TypeID) is not one difflab writes there: numbers and booleans (h5py's
    two-member enum), and strings only in attributes (``strings``). None if it is one."""
    from h5py import h5t

    cls = tid.get_class()
    if cls in (h5t.INTEGER, h5t.FLOAT) or (cls == h5t.STRING and strings):
        return None
    if cls == h5t.ENUM and tid.dtype.kind == "b":
        return None
    names = {h5t.REFERENCE: "an HDF5 reference", h5t.COMPOUND: "a compound type", h5t.OPAQUE: "an opaque type",
             h5t.ENUM: "an enum type", h5t.VLEN: "a variable-length sequence", h5t.ARRAY: "an array type",
             h5t.STRING: "a string", h5t.BITFIELD: "a bit field", h5t.TIME: "a time type"}
    return names.get(cls, "a type difflab never writes")


def _reads_elsewhere(f, file_bytes: int) -> str | None:
    """What in an open HDF5 file would make a reader read outside it, loop, or allocate more than the
    file can hold: an external or soft link, a dataset with external raw storage, a virtual dataset, too
    many objects, a dataset type difflab never writes (reference, compound, opaque...), or datasets
    declaring more bytes than a file of this size can (a memory bomb). None if none. Attributes are
    checked where they are read (``_attributes``: difflab reads those of /, /config and /summary).
    Low-level h5py: a run file's ~30 objects in about a millisecond."""
    from h5py import h5d, h5l, h5o

    links = []

    def visit(name, info):  # every link once (HDF5 visits a group reached twice once: no cycles)
        links.append((name, info.type))
        return True if len(links) > MAX_OBJECTS else None  # anything but None stops the visit

    f.id.links.visit(visit, info=True)
    if len(links) > MAX_OBJECTS:
        return f"more than {MAX_OBJECTS} objects"
    declared_cap = DECLARED_PER_FILE_BYTE * file_bytes + DECLARED_SLACK
    declared = 0
    for raw, kind in links:
        where = "/" + raw.decode(errors="replace")
        if kind != h5l.TYPE_HARD:
            return f"{where} is {'an external' if kind == h5l.TYPE_EXTERNAL else 'a soft'} link"
        otype = h5o.get_info(f.id, raw).type
        if otype == h5o.TYPE_GROUP:
            continue
        if otype != h5o.TYPE_DATASET:
            return f"{where} is not a group or a dataset"
        ds = h5d.open(f.id, raw)
        plist = ds.get_create_plist()
        if plist.get_external_count():
            return f"{where} is stored in another file"
        if plist.get_layout() == h5d.VIRTUAL:
            return f"{where} is a virtual dataset"
        tid = ds.get_type()
        problem = _type_problem(tid, strings=False)
        if problem:
            return f"{where} is {problem}"
        declared += ds.get_space().get_simple_extent_npoints() * tid.get_size()
        if declared > declared_cap:
            return (f"its datasets declare more than {declared_cap / 2**20:.0f} MiB (at {where}), more than "
                    f"a {file_bytes}-byte run file can hold")
    return None


def _json_mapping(text, path, what: str) -> dict:
    """``text`` parsed as a JSON mapping nested at most MAX_JSON_DEPTH deep, or one RunFileError line
    (json.loads itself raises RecursionError, caught here, on nesting deeper than the interpreter's limit)."""
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        raise RunFileError(f"{path}: {what} is not JSON; not a difflab run file of schema {SCHEMA_VERSION}") from None
    if not isinstance(value, dict):
        raise RunFileError(f"{path}: {what} is not a mapping; not a difflab run file of schema {SCHEMA_VERSION}")
    level, depth = list(value.values()), 1
    while level:  # breadth first, no recursion: whatever reads the mapping later may recurse
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise RunFileError(f"{path}: {what} is nested more than {MAX_JSON_DEPTH} deep; not a difflab run file")
        level = [w for v in level if isinstance(v, (list, dict)) for w in (v.values() if isinstance(v, dict) else v)]
    return value


def read_run(path, *, samples: bool = False, series: bool = False, trajectory: bool = False,
             everything: bool = False) -> Run:
    """Read a run file (its arrays as asked; ``everything``: all of them, the summary arrays and
    extra groups included); raise RunFileError if it is not a readable difflab run."""
    if everything:
        samples = series = trajectory = True
    import stat

    import h5py

    if not os.path.lexists(path):
        raise RunFileError(f"{path}: no such file")
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a pipe or a device would block or never end
            raise RunFileError(f"{path}: not a regular file")
        with h5py.File(path, "r") as f:
            if "schema_version" not in f.attrs or "samples" not in f:
                raise RunFileError(f"{path}: not a difflab run file (no schema_version or /samples)")
            foreign = _reads_elsewhere(f, os.path.getsize(path))
            if foreign:
                raise RunFileError(f"{path}: {foreign}; difflab reads only self-contained run files as it "
                                   f"writes them (refused before reading any data)")
            root = _attributes(f, "/", path)
            version = root["schema_version"]
            if not isinstance(version, int):
                raise RunFileError(f"{path}: schema_version is not an integer; not a difflab run file")
            if version > SCHEMA_VERSION:
                raise RunFileError(f"{path}: schema_version {version} is newer than this difflab reads ({SCHEMA_VERSION})")
            if version not in READS:
                raise RunFileError(f"{path}: schema_version {version}; this difflab reads {' and '.join(map(str, READS))}")
            config, summary = _attributes(f, "config", path), _attributes(f, "summary", path)
            _check_shapes(f, path, root, config, summary)
            rec = Run(
                path=str(path),
                attrs=_printable(root),
                params=_printable(_json_mapping(config["params_json"], path, "/config params_json")),
                summary=_printable(summary),
                target_yaml=config["target_yaml"],
                target_source=config["target_source"],
            )
            if samples:
                rec.samples = f["samples"][()]
            if trajectory:
                rec.trajectory = f["trajectory/positions"][()]
                rec.trajectory_step = f["trajectory/step"][()]
            if series:
                rec.metrics = {k: v[()] for k, v in f["metrics"].items() if isinstance(v, h5py.Dataset)}
                per_step = f.get("per_step" if version >= 2 else "metrics/per_step", {})
                rec.per_step = {k: v[()] for k, v in per_step.items()}
            if everything:
                rec.summary_arrays = {k: v[()] for k, v in f["summary"].items()}
                rec.groups = {g: {k: v[()] for k, v in f[g].items() if k != "point"} for g in f
                              if isinstance(f[g], h5py.Group) and g not in _SCHEMA_GROUPS}
            _check_arrays(rec, path)
            return rec
    except RunFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RecursionError) as exc:
        raise RunFileError(f"{path}: not a readable difflab run file ({type(exc).__name__}: {exc})") from None


def is_finished(path) -> bool:
    """A run file that holds a finished run (complete or diverged: re-running gives the same)."""
    try:
        return read_run(path).attrs.get("status") in ("complete", "diverged")
    except RunFileError:
        return False
