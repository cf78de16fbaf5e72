"""Crafted run files, generated rather than listed: every dataset and every attribute of real run files
(a MALA run, and a pflow run with its likelihood group), each replaced by every hostile form a file can
hold — an HDF5 reference, a compound, an opaque, an enum or an array type, a variable-length sequence,
a dataset declared huge and never written (read back as fill values: a memory bomb), a string or a
list where a number belongs, the wrong rank, nothing — plus files nested too deep. A new field in the
schema is attacked automatically.

The rule for every reader (``difflab.load``, ``read_run`` as ``compare``/``show``/``plot``/``export``
call it, ``is_finished`` as sweep resume and ``--if-exists skip`` call it): it reads the file or it
refuses it with one ``RunFileError`` line; on the command line, exit 0 or exit 2 with one line and no
traceback. The bomb files are read by each command in a child process whose peak memory is measured.
"""

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

import difflab
from difflab.errors import RunFileError
from difflab.run.io import _ROOT_TYPES as ROOT_TYPES
from difflab.run.io import (
    DECLARED_PER_FILE_BYTE,
    DECLARED_SLACK,
    MAX_JSON_DEPTH,
    is_finished,
    read_run,
)


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    out = tmp_path_factory.mktemp("bases")
    mala = difflab.sample("mala", "gmm", particles=40, steps=6, seed=1, out=out / "mala.h5")
    pflow = difflab.sample("pflow", "gaussian", particles=30, steps=4, seed=2, out=out / "pflow.h5",
                           likelihood=True, likelihood_points=8)
    return [mala.path, pflow.path]


def _objects(path) -> list[tuple[str, str, str]]:
    """Every ("dataset", path, "") and ("attribute", object path, name) of a run file."""
    found = []
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                found.append(("dataset", name, ""))
            found.extend(("attribute", name, a) for a in obj.attrs if a not in ("REFERENCE_LIST", "DIMENSION_LIST"))
        found.extend(("attribute", "/", a) for a in f.attrs)
        f.visititems(visit)
    return found


DATASET_FORMS = ("reference", "compound", "opaque", "enum", "array type", "vlen", "bomb", "string",
                 "scalar", "missing")
ATTRIBUTE_FORMS = ("reference", "compound", "opaque", "enum", "vlen", "string", "list", "huge", "deep json")


def _hostile(f, form: str, like=None):
    """(data, dtype) of one hostile form, shaped like ``like`` where a shape matters."""
    shape = like.shape if like is not None and like.shape else (3,)
    if form == "reference":
        return np.full(shape, f.ref, dtype=h5py.ref_dtype), None
    if form == "compound":
        return np.zeros(shape, dtype=[("a", "f8"), ("b", "i4")]), None
    if form == "opaque":
        return np.zeros(shape, dtype="V8"), None
    if form == "enum":
        return np.zeros(shape, dtype="u1"), h5py.enum_dtype({"RED": 0, "GREEN": 1}, basetype="u1")
    if form == "vlen":
        data = np.empty(shape, dtype=object)
        for i in range(data.size):
            data.flat[i] = np.arange(3.0)
        return data, h5py.vlen_dtype(np.float64)
    raise AssertionError(form)


def craft(base, out, kind: str, where: str, name: str, form: str) -> None:
    """A copy of ``base`` at ``out`` with one object replaced by one hostile form."""
    shutil.copyfile(base, out)
    with h5py.File(out, "r+") as f:
        if kind == "dataset":
            like = f[where]
            shape, dtype = like.shape, like.dtype
            del f[where]
            if form == "missing":
                return
            if form == "bomb":  # 8 GiB declared, nothing written: the file stays small
                big = (1 << 30,) + tuple(shape[1:]) if len(shape) else (1 << 30,)
                f.create_dataset(where, shape=big, dtype="f8", chunks=True, compression="gzip")
            elif form == "string":
                f.create_dataset(where, data=np.full(shape or (1,), b"x"))
            elif form == "scalar":
                f.create_dataset(where, data=1.0)
            elif form == "array type":  # an HDF5 array type (h5py would turn a numpy subarray into a dimension)
                tid = h5py.h5t.array_create(h5py.h5t.IEEE_F64LE, (2,))
                h5py.h5d.create(f.id, where.encode(), tid, h5py.h5s.create_simple(shape or (3,)))
            else:
                data, dt = _hostile(f, form, np.empty(shape or (3,), dtype=dtype))
                f.create_dataset(where, data=data, dtype=dt)
            return
        obj = f[where]
        old = obj.attrs[name]
        del obj.attrs[name]
        if form == "string":
            obj.attrs[name] = "not a number" if not isinstance(old, (str, bytes)) else "{not json"
        elif form == "list":
            obj.attrs[name] = np.arange(3.0)
        elif form == "huge":  # 8 MiB of text, in dense attribute storage
            obj.attrs.create(name, "x" * (8 << 20))
        elif form == "deep json":
            obj.attrs[name] = "[" * 100_000 + "]" * 100_000
        else:
            data, dt = _hostile(f, form)
            obj.attrs.create(name, data, dtype=dt)


TYPE_FORMS = ("reference", "compound", "opaque", "enum", "array type", "vlen")
READ_ATTRIBUTES = ("/", "config", "summary")  # the objects whose attributes difflab reads


def _cases(bases):
    for i, base in enumerate(bases):
        for kind, where, name in _objects(base):
            for form in DATASET_FORMS if kind == "dataset" else ATTRIBUTE_FORMS:
                if form in ("huge", "deep json") and where not in READ_ATTRIBUTES:
                    continue  # sizes matter where values are read (8 MiB each would cost only disk)
                yield i, kind, where, name, form




def must_refuse(kind: str, where: str, name: str, form: str) -> bool:
    """The oracle: a dataset of a hostile type or declared huge anywhere; /samples missing; where
    difflab reads attributes, a hostile attribute type or size; text or a list for a summary value or
    schema_version; params_json not a JSON mapping; the target's text not text."""
    if kind == "dataset":
        return form in (*TYPE_FORMS, "bomb", "string") or (where == "samples" and form in ("scalar", "missing"))
    if where not in READ_ATTRIBUTES:
        return False
    if form in (*TYPE_FORMS, "huge"):
        return True
    if where == "summary" or name in ("schema_version", "params_json"):
        return form in ("string", "list", "deep json")
    if where == "/" and name in ROOT_TYPES:  # typed root attributes: text where a number belongs, lists
        return form == "list" or (form in ("string", "deep json") and ROOT_TYPES[name] is not str)
    return name in ("target_yaml", "target_source") and form == "list"


def _generated(folder, bases, every: int = 1):
    """(what, path, must be refused) for every ``every``-th case, one file at a time: each is removed
    when the next is made (the "huge" ones hold 8 MiB)."""
    out = folder / "case.h5"
    for n, (i, kind, where, name, form) in enumerate(_cases(bases)):
        if n % every:
            continue
        try:
            craft(bases[i], out, kind, where, name, form)
        except (ValueError, TypeError, OSError) as exc:  # h5py refuses to write it: then no file holds it
            pytest.fail(f"could not craft {kind} {where} {name} {form}: {exc}")
        yield f"{kind} {where}{'@' + name if name else ''} as {form}", out, must_refuse(kind, where, name, form)
        out.unlink()


def check_readers(files) -> tuple[int, int, int]:
    """Every reader on every file: read_run with everything (load, plot, export) and is_finished
    (attributes only: compare, show, sweep resume, --if-exists skip) read it or refuse it with one
    RunFileError line naming the file; what is read holds only what the schema allows. Returns
    (cases, refused, expected to be refused)."""
    cases = refused = expected_refused = 0
    for what, path, expected in files:
        cases += 1
        expected_refused += expected
        try:
            run = read_run(path, everything=True)
        except RunFileError as exc:
            message = str(exc)
            assert str(path) in message and "\n" not in message and len(message) < 400, (what, message)
            refused += 1
            assert is_finished(path) in (True, False), what  # the attributes only (a missing array shows later)
            continue
        assert not expected, f"{what}: read, should be refused"
        assert all(isinstance(v, (int, float)) for v in run.summary.values()), what
        assert isinstance(run.params, dict), what
        json.dumps(run.params)  # nothing nested beyond what the reader allows
        for arr in (run.samples, run.trajectory, *run.metrics.values(), *run.per_step.values(),
                    *run.summary_arrays.values()):
            assert np.asarray(arr).dtype.kind in "fiub", what
        # is_finished reads a prefix of what read_run(everything) read: it cannot fail here
    return cases, refused, expected_refused


def test_a_sample_of_the_crafted_corpus(bases, tmp_path):
    """Every 17th generated case (~160 files; the whole corpus runs in the slow tier)."""
    cases, refused, expected = check_readers(_generated(tmp_path, bases, every=17))
    assert refused >= expected > 20 and cases > 100  # negative control: the oracle expects refusals


@pytest.mark.slow
def test_the_whole_crafted_corpus(bases, tmp_path):
    """All ~2,700 generated files (two run files' every dataset and attribute, every hostile form)."""
    cases, refused, expected = check_readers(_generated(tmp_path, bases))
    assert cases >= 9 * len(_objects(bases[0]))  # the corpus grows with the schema
    assert refused >= expected > 500


@pytest.mark.parametrize("form", ["reference", "compound", "opaque", "enum", "vlen", "bomb", "missing"])
def test_hostile_samples_are_refused(bases, tmp_path, form):
    """The forms one by one on /samples (a test that names what each refusal says)."""
    out = tmp_path / "c.h5"
    craft(bases[0], out, "dataset", "samples", "", form)
    with pytest.raises(RunFileError) as info:
        read_run(out, samples=True)
    expect = {"reference": "reference", "compound": "compound", "opaque": "opaque", "enum": "enum",
              "vlen": "variable-length", "bomb": "declare", "missing": "no schema_version or /samples"}[form]
    assert expect in str(info.value)


def test_the_bases_read_back(bases):
    """Negative control: the untouched run files read, every reader."""
    for base in bases:
        run = read_run(base, everything=True)
        assert run.summary and is_finished(base)


def test_summary_values_must_be_numbers(bases, tmp_path):
    for value in ("a string", np.arange(3.0)):
        out = tmp_path / "c.h5"
        shutil.copyfile(bases[0], out)
        with h5py.File(out, "r+") as f:
            f["summary"].attrs["mmd2"] = value
        with pytest.raises(RunFileError, match="/summary attribute 'mmd2' is not a number"):
            read_run(out)


def test_params_json_nesting(bases, tmp_path):
    """Nested beyond MAX_JSON_DEPTH (but within what json.loads handles) or beyond the interpreter's
    recursion limit: refused; a flat mapping with one list reads (negative control)."""
    for depth, ok in ((MAX_JSON_DEPTH + 5, False), (100_000, False), (2, True)):
        out = tmp_path / f"c{depth}.h5"
        shutil.copyfile(bases[0], out)
        with h5py.File(out, "r+") as f:
            params = json.loads(f["config"].attrs["params_json"])
            params["deep"] = json.loads("[" * (depth - 1) + "]" * (depth - 1)) if depth < 1000 else None
            text = json.dumps(params) if depth < 1000 else "{\"a\": " + "[" * depth + "]" * depth + "}"
            f["config"].attrs["params_json"] = text
        if ok:
            assert read_run(out).params["deep"] == []
        else:
            with pytest.raises(RunFileError, match="nested|not JSON"):
                read_run(out)


def test_declared_size_cap_allows_difflab_files(tmp_path):
    """The cap on declared bytes holds for a real file whose data compress well (a long, mostly
    constant trajectory), and not for the same declaration unwritten: the cap is DECLARED_PER_FILE_BYTE
    times the file size plus DECLARED_SLACK."""
    run = difflab.sample("ula", "gaussian", particles=200, steps=400, seed=0, save_every=1,
                         out=tmp_path / "long.h5")
    assert read_run(run.path, everything=True).trajectory.shape[0] >= 400
    size = (tmp_path / "long.h5").stat().st_size
    out = tmp_path / "bomb.h5"
    with h5py.File(out, "w") as f:
        f.attrs["schema_version"] = 2
        f.create_dataset("samples", shape=((DECLARED_PER_FILE_BYTE * size + DECLARED_SLACK) // 8 + 1, 1), dtype="f8",
                         chunks=True)
    with pytest.raises(RunFileError, match="declare"):
        read_run(out)


# Peak memory from VmHWM (the process's own high-water mark since exec; ru_maxrss would include
# the memory of the pytest process it was forked from).
BOMB_READER = """
import sys
from difflab.cli.app import app
from typer.testing import CliRunner
r = CliRunner().invoke(app, sys.argv[1:])
with open("/proc/self/status") as f:
    peak = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024
print(r.exit_code, round(peak), repr(r.output.strip()[:2000]))
"""


@pytest.mark.system
def test_memory_bombs_cost_no_memory(bases, tmp_path):
    """Each command that reads a run file, on bomb files (8 GiB declared in ~70 KB at /samples, at the
    trajectory, at a metric), in a child process: exit 2, one line, peak memory under 200 MB, nothing
    written. Without the check, export allocated and wrote gigabytes."""
    for where in ("samples", "trajectory/positions", "metrics/mean_error"):
        bomb = tmp_path / f"bomb-{where.replace('/', '-')}.h5"
        craft(bases[0], bomb, "dataset", where, "", "bomb")
        assert bomb.stat().st_size < 1 << 20
        for args in (["show", bomb], ["compare", bomb, "--json"], ["export", bomb, "-o", tmp_path / "out.nc"],
                     ["plot", bomb, "-o", tmp_path / "out.png"]):
            proc = subprocess.run([sys.executable, "-c", BOMB_READER, *map(str, args)], capture_output=True,
                                  text=True, check=False)
            code, peak, output = proc.stdout.split(" ", 2)
            assert code == "2", (args[0], where, proc.stdout, proc.stderr)
            assert "declare" in output and "Traceback" not in output + proc.stderr, output
            assert int(peak) < 200, (args[0], where, peak)
        assert not (tmp_path / "out.nc").exists() and not (tmp_path / "out.png").exists()


@pytest.mark.slow
def test_every_command_reads_or_refuses_crafted_files(bases, tmp_path):
    """Every 10th generated case through show, compare and export on the command line: exit 0 or 2,
    one line when 2, never a traceback; export writes nothing for a refused file."""
    from typer.testing import CliRunner

    from difflab.cli.app import app

    runner = CliRunner()
    for what, path, _ in _generated(tmp_path, bases, every=10):
        for args in (["show", path], ["compare", path, "--json"], ["export", path, "-o", tmp_path / "o.nc"]):
            r = runner.invoke(app, [str(a) for a in args])
            text = r.output
            assert r.exception is None or isinstance(r.exception, SystemExit), (what, args[0], text)
            assert r.exit_code in (0, 2) and "Traceback" not in text, (what, args[0], r.exit_code, text)
            if r.exit_code == 2 and args[0] != "compare":
                assert len(text.strip().splitlines()) == 1, (what, args[0], text)
            if args[0] == "export":
                assert (tmp_path / "o.nc").exists() == (r.exit_code == 0), (what, text)
                (tmp_path / "o.nc").unlink(missing_ok=True)


@pytest.mark.parametrize("form", ["compound", "bomb"])
def test_if_exists_skip_runs_again_over_a_crafted_file(bases, tmp_path, form):
    """--if-exists skip (and sweep resume, through the same is_finished) treats a crafted file at the
    run's path as unfinished: the run is done again and the file replaced by a readable one."""
    from typer.testing import CliRunner

    from difflab.cli.app import app

    out = tmp_path / "run.h5"
    craft(bases[0], out, "dataset", "samples", "", form)
    assert not is_finished(out)
    r = CliRunner().invoke(app, ["sample", "mala", "-t", "gaussian", "-n", "30", "--steps", "3", "-o", str(out),
                                 "--if-exists", "skip"])
    assert r.exit_code == 0, r.output
    assert is_finished(out) and read_run(out, samples=True).samples.shape == (30, 2)


def test_text_from_a_run_file_cannot_drive_the_terminal(bases, tmp_path):
    """Escape sequences and newlines planted in a run file's text (a root attribute, a parameter's
    key and value, a summary key) never reach the terminal: show, compare (table and CSV) print
    U+FFFD in their place. Negative control: the planted text is there in the raw file."""
    from typer.testing import CliRunner

    from difflab.cli.app import app

    out = tmp_path / "esc.h5"
    shutil.copyfile(bases[0], out)
    evil = "\x1b]0;owned\x07\x1b[2J\nline\r"
    with h5py.File(out, "r+") as f:
        f.attrs["sampler"] = "mala" + evil
        params = json.loads(f["config"].attrs["params_json"])
        params["step_size" + evil] = "x" + evil
        f["config"].attrs["params_json"] = json.dumps(params)
        f["summary"].attrs["mmd2" + evil] = 1.0
    with h5py.File(out, "r") as f:
        assert "\x1b" in f.attrs["sampler"]
    for args in (["show", out], ["compare", out], ["compare", out, "--csv"], ["compare", out, "--json"]):
        r = CliRunner().invoke(app, [str(a) for a in args])
        assert r.exit_code == 0, (args, r.output)
        assert "\x1b" not in r.output and "\x07" not in r.output and "\r" not in r.output, args
        if args[0] == "show":  # (compare of one run shows no parameters: none differ)
            assert "\ufffd" in r.output, r.output
