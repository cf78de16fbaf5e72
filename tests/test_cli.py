"""End to end through the CLI: sample -> run file -> compare/show, reproducibility, bad input."""

import json
import os
import re
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import wait_until_handling_sigterm
from typer.testing import CliRunner

from difflab.cli.app import app
from difflab.run.io import SCHEMA_VERSION, read_run

runner = CliRunner()
SMALL = ["-n", "200", "--steps", "60", "-q"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_sample_writes_the_documented_schema(in_tmp):
    r = invoke("sample", "mala", *SMALL, "--save-every", "10", "--metrics-every", "20", "--trajectory-particles", "7")
    assert r.exit_code == 0, r.output
    path = r.stdout.strip()  # -q: the path alone on stdout (convergence warnings go to stderr)
    assert path.startswith("runs/mala-gmm-") and path.endswith(".h5")
    with h5py.File(path) as f:
        for key in ("difflab_version", "schema_version", "sampler", "target", "seed", "status", "steps_done",
                    "diverged_step", "wall_time_s", "created", "argv", "n_particles", "dim"):
            assert key in f.attrs, key
        assert f.attrs["schema_version"] == SCHEMA_VERSION
        assert f.attrs["status"] == "complete" and f.attrs["steps_done"] == 60
        assert f["samples"].shape == (200, 2) and f["samples"].dtype == np.float64
        assert "ring" in f["config"].attrs["target_yaml"]
        assert json.loads(f["config"].attrs["params_json"])["step_size"] == 0.1
        assert f["config/params"].attrs["particles"] == 200
        assert f["trajectory/positions"].shape == (7, 7, 2)
        assert f["trajectory/step"][()].tolist() == [0, 10, 20, 30, 40, 50, 60]
        assert f["trajectory/positions"].compression == "gzip"
        assert f["metrics/step"][()].tolist() == [0, 20, 40, 60]
        for m in ("mean_error", "cov_rel_error", "w2_gaussian", "sliced_w2", "mode_tv"):
            assert f[f"metrics/{m}"].shape == (4,)
        assert f["per_step/acceptance_rate"].shape == (60,)
        assert f["per_step/step"][()].tolist() == list(range(1, 61))
        summary = dict(f["summary"].attrs)
        for m in ("mean_error", "sliced_w2", "mmd2", "energy", "mode_tv", "acceptance_rate", "step_size",
                  "ess_min", "split_rhat_max", "floor_sliced_w2"):
            assert m in summary, m
        assert f["summary/ess"].shape == (2,) and f["summary/split_rhat"].shape == (2,)
    assert not [p for p in os.listdir("runs") if p.startswith(".")]  # no temporary file left


def test_same_command_and_seed_are_bit_identical(in_tmp):
    for out, seed in (("a.h5", 3), ("b.h5", 3), ("c.h5", 4)):
        r = invoke("sample", "ula", *SMALL, "--seed", seed, "-o", out)
        assert r.exit_code == 0, r.output
    a, b, c = (read_run(p, samples=True) for p in ("a.h5", "b.h5", "c.h5"))
    assert a.samples.tobytes() == b.samples.tobytes()
    assert a.summary == {k: v for k, v in b.summary.items()}
    assert not np.array_equal(a.samples, c.samples)


def test_default_name_depends_on_parameters_and_seed(in_tmp):
    paths = {invoke("sample", "ula", *SMALL, *extra).stdout.strip()
             for extra in ([], ["--seed", "1"], ["--step-size", "0.02"])}
    assert len(paths) == 3


def test_existing_file_is_not_overwritten_without_force(in_tmp):
    assert invoke("sample", "ula", *SMALL, "-o", "r.h5").exit_code == 0
    before = (in_tmp / "r.h5").read_bytes()
    r = invoke("sample", "ula", *SMALL, "--seed", "9", "-o", "r.h5")
    assert r.exit_code == 2 and "exists" in r.output and "--force" in r.output
    assert (in_tmp / "r.h5").read_bytes() == before
    r = invoke("sample", "ula", *SMALL, "--seed", "9", "-o", "r.h5", "--force")
    assert r.exit_code == 0 and (in_tmp / "r.h5").read_bytes() != before


BAD_OPTIONS = [
    (["sample", "localization", "--t-max", "1e-5"], "--t-max: must be > --t-min"),
    (["sample", "localization", "--transition", "exact"], "--transition: expected one of gaussian, em"),
    (["sample", "localization", "--output", "x"], "--output: expected one of mean, y"),
    (["sample", "ddpm", "--steps", "1001"], "--steps: ddpm runs on at most the schedule's 1000 steps"),
    (["sample", "ddpm", "--eta", "-1"], "--eta: must be >= 0"),
    (["sample", "ddpm", "--variance", "sigma"], "--variance: expected one of beta-tilde, beta"),
    (["sample", "ddpm", "--schedule", "cosine"], "--schedule: expected one of vp-linear, vp-cosine, ve"),
    (["sample", "ddpm", "--early-stop", "1.5"], "--early-stop: must be in [0, 1)"),
    (["sample", "pflow", "--early-stop", "0"], "--early-stop: must be in (0, 1)"),
    (["sample", "pflow", "--solver", "rk2"], "--solver: expected one of euler, heun, rk4, dpm2, rk45"),
    (["sample", "pflow", "--grid", "log"], "--grid: expected one of logsnr, uniform"),
    (["sample", "pflow", "--rtol", "0"], "--rtol: must be positive"),
    (["sample", "pflow", "--beta-min", "5", "--beta-max", "1"], "--beta-max: must be >= --beta-min"),
    (["sample", "pflow", "--prior", "wide"], "--prior: expected one of matched, standard"),
    (["sample", "ula", "--step-size", "-0.1"], "--step-size: must be positive"),
    (["sample", "ula", "--step-size", "0"], "--step-size: must be positive"),
    (["sample", "ula", "--step-size", "nan"], "--step-size: must be positive"),
    (["sample", "mala", "-n", "0"], "--particles: must be >= 2"),
    (["sample", "mala", "-n", "1"], "--particles: must be >= 2"),
    (["sample", "mala", "--steps", "0"], "--steps: must be in [1, 2^63), got 0"),
    (["sample", "mala", "--seed", "-1"], "--seed: must be in [0, 2^64)"),
    (["sample", "mala", "--save-every", "0"], "--save-every: must be positive"),
    (["sample", "mala", "--init", "uniform"], "--init: expected one of normal, target"),
    (["sample", "mala", "--adapt", "--warmup", "0"], "--warmup: must be positive"),
    (["sample", "mala", "-t", "nope"], "no shipped target 'nope'"),
    (["sample", "mala", "-t", "."], "is a folder"),
]


@pytest.mark.parametrize("args,message", BAD_OPTIONS)
def test_bad_options_exit_2_and_write_nothing(in_tmp, args, message):
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (in_tmp / "runs").exists()


def test_unwritable_output_is_refused_before_the_run(in_tmp):
    (in_tmp / "afile").write_text("x")
    r = invoke("sample", "ula", *SMALL, "-o", "afile/run.h5")
    assert r.exit_code == 2 and "is not a writable folder" in r.output
    (in_tmp / "adir").mkdir()
    r = invoke("sample", "ula", *SMALL, "-o", "adir")
    assert r.exit_code == 2 and "is a folder" in r.output
    assert sorted(os.listdir(in_tmp)) == ["adir", "afile"] and os.listdir(in_tmp / "adir") == []


BAD_FILES = [
    ("kind: gaussian\nmean: [0, 1\n", "YAML syntax error"),
    ("", "empty"),
    ("kind: gmm\ncomponents:\n  - {weight: 1, mean: [0], cov: [[-1]]}\n", "components[0].cov: must be positive definite"),
    ("kind: gaussian\nmean: [0, 1]\ncov: [[1, 0.5], [0.4, 1]]\n", "cov: must be symmetric"),
]


@pytest.mark.parametrize("text,message", BAD_FILES)
def test_bad_target_files_through_the_cli(in_tmp, text, message):
    (in_tmp / "bad.yaml").write_text(text)
    r = invoke("sample", "mala", "-t", "bad.yaml")
    assert r.exit_code == 2
    assert r.output.startswith("error: bad.yaml: ") and message in r.output
    assert not (in_tmp / "runs").exists()


@pytest.mark.system
def test_unknown_sampler_and_option_are_one_line_exit_2(in_tmp):
    for args, words in ((["sample", "langevin"], "No such command 'langevin'"),
                        (["sample", "ula", "--stepsize", "1"], "No such option: --stepsize")):
        p = subprocess.run([sys.executable, "-m", "difflab", *args], capture_output=True, text=True)
        assert p.returncode == 2
        assert words in p.stderr and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_diverged_run_leaves_a_file_that_says_so(in_tmp):
    r = invoke("sample", "ula", "-t", "gaussian", "--step-size", "5", "--steps", "3000", "-n", "20", "-o", "d.h5", "-q")
    assert r.exit_code == 3, r.output
    rec = read_run("d.h5", samples=True)
    assert rec.attrs["status"] == "diverged"
    assert 1 < rec.attrs["diverged_step"] < 3000 and rec.attrs["steps_done"] == rec.attrs["diverged_step"] - 1
    assert np.isfinite(rec.samples).all()


def test_interrupted_run_leaves_a_file_that_says_so(in_tmp, monkeypatch):
    from difflab.samplers import langevin

    calls = {"n": 0}
    real = langevin.ULA.step

    def step(self, rng, state):
        calls["n"] += 1
        if calls["n"] > 25:
            raise KeyboardInterrupt
        return real(self, rng, state)

    monkeypatch.setattr(langevin.ULA, "step", step)
    r = invoke("sample", "ula", *SMALL, "-o", "i.h5")
    assert r.exit_code == 130
    rec = read_run("i.h5")
    assert rec.attrs["status"] == "interrupted" and rec.attrs["steps_done"] == 25


def test_a_failed_write_leaves_nothing_behind(in_tmp, monkeypatch):
    import difflab.run.io as dio

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(h5py.Group, "create_group", broken)
    with pytest.raises(OSError):
        dio.write_run(in_tmp / "x.h5", dio.Run(path="", attrs={}, params={}, summary={}, samples=np.zeros((2, 1)),
                                               trajectory=np.zeros((1, 1, 1)), trajectory_step=[0]))
    assert os.listdir(in_tmp) == []


def test_compare_table_json_csv_and_unreadable_rows(in_tmp):
    for h in ("0.01", "0.05"):
        assert invoke("sample", "ula", *SMALL, "--step-size", h).exit_code == 0
    (in_tmp / "runs" / "junk.h5").write_text("not hdf5")
    files = sorted(str(p) for p in (in_tmp / "runs").iterdir())
    r = invoke("compare", *files)
    assert r.exit_code == 2, r.output  # the table, then one line: a file was not a readable run
    assert "step_size" in r.output and "unreadable" in r.output and "1 of 3 files is not a readable run" in r.stderr
    assert invoke("compare", *[f for f in files if "junk" not in f]).exit_code == 0  # negative control
    r = invoke("compare", *files, "--json")
    rows = json.loads(r.stdout)
    assert len(rows) == 3 and sum("error" in row for row in rows) == 1
    ok = [row for row in rows if "error" not in row]
    assert sorted(row["params"]["step_size"] for row in ok) == [0.01, 0.05]
    r = invoke("compare", *files, "--csv", "--sort", "step_size")
    import csv

    lines = list(csv.reader(r.output.strip().splitlines()))  # run names hold commas (their labels): quoted
    header = lines[0]
    assert header[:3] == ["run", "status", "steps_done"] and "step_size" in header and "sliced_w2" in header
    col = header.index("step_size")
    assert [ln[col] for ln in lines[1:3]] == ["0.01", "0.05"]
    r = invoke("compare", *files, "--sort", "bogus")
    assert r.exit_code == 2 and "--sort: unknown column 'bogus'" in r.output


def test_show_targets_and_help(in_tmp):
    assert invoke("sample", "mala", *SMALL, "-o", "s.h5").exit_code == 0
    r = invoke("show", "s.h5")
    assert r.exit_code == 0 and "acceptance_rate" in r.output and "param step_size" in r.output
    r = invoke("show", "missing.h5")
    assert r.exit_code == 2 and "missing.h5: no such file" in r.output
    r = invoke("targets")
    assert all(name in r.output for name in ("gaussian", "gmm", "gmm50"))
    for cmd in ([], ["sample"], ["sample", "ula"], ["sample", "mala"], ["compare"], ["targets"], ["show"]):
        r = invoke(*cmd, "--help")
        assert r.exit_code == 0 and "Usage" in r.output, cmd


def test_init_target_and_adapt_are_recorded(in_tmp):
    r = invoke("sample", "mala", "-t", "gaussian", "-n", "300", "--steps", "50", "--adapt", "--warmup", "200",
               "--init", "target", "-o", "a.h5", "-q")
    assert r.exit_code == 0, r.output
    rec = read_run("a.h5")
    assert rec.params["adapt"] is True and rec.params["warmup"] == 200 and rec.params["init"] == "target"
    assert rec.summary["step_size"] != 0.1
    assert abs(rec.summary["acceptance_rate"] - 0.574) < 0.05


@pytest.mark.parametrize("argv", [[], ["--help"], ["sample", "--help"], ["sample", "ula", "--help"], ["sweep", "--help"],
                                  ["compare", "--help"], ["plot", "--help"]])
@pytest.mark.system
def test_help_imports_no_heavy_module(argv):
    """Start-up: help never imports numpy, scipy, h5py, matplotlib or rich (measured in the README)."""
    code = ("import sys; sys.argv = ['difflab', *sys.argv[1:]]; from difflab.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "heavy = [m for m in ('numpy', 'scipy', 'h5py', 'matplotlib', 'rich') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert "Usage: difflab" in r.stdout


@pytest.mark.parametrize("sampler,extra", [("ddpm", ["--steps", "50"]), ("pflow", ["--steps", "20"]),
                                           ("localization", ["--steps", "30"]),
                                           ("pflow", ["--solver", "rk45"]), ("ddpm", ["--steps", "40", "--early-stop", "0.01"])])
def test_diffusion_runs_record_nfe_and_exact_law(in_tmp, sampler, extra):
    r = invoke("sample", sampler, "-t", "gaussian", "-n", "500", *extra, "-o", "d.h5", "-q")
    assert r.exit_code == 0, r.output
    rec = read_run("d.h5", series=True)
    assert rec.attrs["status"] == "complete" and rec.params.get("schedule", "vp-linear") == "vp-linear"
    # ddpm: one per step (+1 final denoise); heun: two; localization: one per move and the read-out
    expected_nfe = {"50": 50, "20": 40, "40": 41, "30": 31}
    assert rec.summary["nfe"] == expected_nfe[extra[1]] if extra[1] in expected_nfe else rec.summary["nfe"] > 10
    if "rk45" in extra:
        assert "exact_kl" not in rec.summary  # adaptive steps: no exact law
    else:
        assert rec.summary["exact_kl"] >= 0 and rec.summary["exact_w2"] > 0
        # a series along the run where the state is the sample; localization's y_t is not
        assert ("exact_w2" in rec.metrics) == (sampler != "localization")
        if sampler != "localization":
            assert len(rec.metrics["exact_w2"]) == len(rec.metrics["step"])
    assert "ess_min" not in rec.summary  # MCMC diagnostics only for MCMC samplers


def test_score_error_run_records_its_error_and_is_reproducible(in_tmp):
    for out in ("e1.h5", "e2.h5"):
        r = invoke("sample", "pflow", "-t", "bimodal1d", "-n", "300", "--steps", "30", "--score-error", "0.2",
                   "-o", out, "-q")
        assert r.exit_code == 0, r.output
    a, b = read_run("e1.h5", samples=True, series=True), read_run("e2.h5", samples=True)
    assert a.samples.tobytes() == b.samples.tobytes()
    assert a.params["score_error"] == 0.2 and a.params["score_error_kind"] == "bias"
    assert a.summary["score_error_term"] > 0 and a.summary["score_error_term_se"] > 0
    assert len(a.per_step["score_mse"]) == 30 and (a.per_step["score_mse"] > 0).all()
    r = invoke("sample", "pflow", "-t", "bimodal1d", "-n", "300", "--steps", "30", "-o", "exact.h5", "-q")
    assert not np.array_equal(read_run("exact.h5", samples=True).samples, a.samples)


def _help_via(module: str, columns: str, *argv: str) -> subprocess.CompletedProcess:
    code = (f"import sys; sys.argv = ['difflab', *sys.argv[1:]]; from {module} import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "print('TYPER' if 'typer' in sys.modules else 'NO-TYPER', file=sys.stderr)\n")
    env = {**os.environ, "COLUMNS": columns}
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, check=False)


@pytest.mark.parametrize("argv", [[], ["--help"]])
def test_static_top_level_help_is_typers_own_text(argv):
    """The entry point prints the top-level help without importing Typer (start-up), and the text
    is exactly what Typer renders; on a narrow terminal Typer renders it (negative control)."""
    from difflab.cli.entry import TOP_HELP

    fast, full = _help_via("difflab.cli.entry", "120", *argv), _help_via("difflab.cli.app", "120", *argv)
    assert fast.stdout == TOP_HELP == full.stdout
    assert fast.stderr.strip() == "NO-TYPER" and full.stderr.strip() == "TYPER"
    narrow = _help_via("difflab.cli.entry", "40", *argv)
    assert narrow.stderr.strip() == "TYPER" and narrow.stdout != TOP_HELP and "Usage: difflab" in narrow.stdout


def test_temporary_files_are_not_at_guessable_names(in_tmp):
    """A link planted where a temporary file used to be predictable (.<name>.tmp-<pid>) is never
    written through: the write goes to an exclusively created, unpredictable name."""
    import difflab.run.io as dio

    victim = in_tmp / "victim.txt"
    victim.write_text("keep me")
    for pid in {os.getpid(), os.getppid()}:
        (in_tmp / f".x.h5.tmp-{pid}").symlink_to(victim)
    dio.write_run(in_tmp / "x.h5", dio.Run(path="", attrs={}, params={}, summary={}, samples=np.zeros((2, 1)),
                                           trajectory=np.zeros((1, 1, 1)), trajectory_step=[0]))
    assert victim.read_text() == "keep me" and (in_tmp / "x.h5").is_file() and not (in_tmp / "x.h5").is_symlink()
    assert sorted(p.name for p in in_tmp.iterdir() if p.name.startswith(".x.h5.") and not p.is_symlink()) == []


def _tiny_run():
    import difflab.run.io as dio

    return dio.Run(path="", attrs={"seed": 7}, params={}, summary={}, samples=np.zeros((2, 1)),
                   trajectory=np.zeros((1, 1, 1)), trajectory_step=[0])


def test_a_write_without_replace_never_touches_an_existing_file(in_tmp):
    """write_run(replace=False) onto a name that exists raises, leaves the file byte for byte and no
    temporary file; write_run_new then writes beside it under the first free name."""
    import difflab.run.io as dio

    taken = in_tmp / "x.h5"
    taken.write_bytes(b"another writer's run")
    with pytest.raises(FileExistsError):
        dio.write_run(taken, _tiny_run(), replace=False)
    assert taken.read_bytes() == b"another writer's run"
    assert [p.name for p in in_tmp.iterdir()] == ["x.h5"]
    (in_tmp / "x-1.h5").write_bytes(b"a second one")
    assert dio.write_run_new(taken, _tiny_run()) == in_tmp / "x-2.h5"
    assert dio.read_run(in_tmp / "x-2.h5").attrs["seed"] == 7 and taken.read_bytes() == b"another writer's run"


def test_a_run_file_that_appears_while_the_run_runs_is_not_replaced(in_tmp, monkeypatch):
    """The name is free when the run starts; another writer takes it before the end: the run is
    saved beside it (x-1.h5), the other file is left as it was, and the command says so."""
    from difflab.run import sampling

    real = sampling.execute

    def execute(opts, **kw):
        kw["path"].write_bytes(b"the other writer's run")  # taken after the start-up check
        return real(opts, **kw)

    monkeypatch.setattr(sampling, "execute", execute)
    r = invoke("sample", "ula", "-t", "gaussian", "-n", "20", "--steps", "3", "--seed", "5", "-o", "x.h5", "-q")
    assert r.exit_code == 0, r.output
    assert (in_tmp / "x.h5").read_bytes() == b"the other writer's run"
    assert read_run(in_tmp / "x-1.h5").attrs["seed"] == 5
    assert r.stdout.strip().endswith("x-1.h5") and "written by another process" in r.stderr


@pytest.mark.system
def test_concurrent_writers_of_one_name_lose_nothing(in_tmp):
    """Four processes write -o same.h5 at once (seeds 1..4, no --force): every process that exits 0
    has its seed in a file it printed; a process that found the name taken at its start exits 2
    having written nothing. No result is lost without a word."""
    # the floors of (gaussian, 1,000 particles) in the session's cache first, so the four runs race
    # to write their files, not to compute the same floors four times
    import difflab

    difflab.sample("ula", target="gaussian", particles=1000, steps=2)
    procs = [subprocess.Popen([sys.executable, "-m", "difflab", "sample", "ula", "-t", "gaussian", "-n", "1000",
                               "--steps", "200", "--seed", str(k), "-o", "same.h5", "-q"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(1, 5)]
    outcomes = [(k, p.wait(timeout=120), p.stdout.read().strip()) for k, p in zip(range(1, 5), procs)]
    written = {read_run(in_tmp / f.name).attrs["seed"] for f in in_tmp.glob("same*.h5")}
    for seed, code, printed in outcomes:
        assert code in (0, 2), (seed, code)
        if code == 0:
            assert read_run(in_tmp / os.path.basename(printed)).attrs["seed"] == seed
    assert written == {seed for seed, code, _ in outcomes if code == 0} and written


def _crafted(path, how, secret):
    """A valid-looking run file whose /samples reads ``secret`` (another file) by ``how``."""
    import difflab.run.io as dio

    dio.write_run(path, _tiny_run())
    with h5py.File(path, "a") as f:
        del f["samples"]
        if how == "external storage":
            f.create_dataset("samples", shape=(2, 1), dtype="f8", external=[(str(secret), 0, 16)])
        elif how == "external link":
            f["samples"] = h5py.ExternalLink(str(secret), "/data")
        elif how == "virtual dataset":
            layout = h5py.VirtualLayout(shape=(2, 1), dtype="f8")
            layout[:] = h5py.VirtualSource(str(secret), "data", shape=(2, 1))
            f.create_virtual_dataset("samples", layout)
        else:  # a soft link into the file
            f.create_dataset("hidden", data=np.zeros((2, 1)))
            f["samples"] = h5py.SoftLink("/hidden")


@pytest.mark.parametrize("how", ["external storage", "external link", "virtual dataset", "soft link"])
def test_readers_refuse_run_files_that_read_other_files(in_tmp, how):
    """show, compare, export and --points refuse a run file whose data lives elsewhere: one line,
    exit 2, nothing written (export writes no .nc holding the other file's bytes)."""
    secret = in_tmp / "secret.h5"
    with h5py.File(secret, "w") as f:
        f["data"] = np.array([[4.0], [2.0]])
    raw = in_tmp / "raw.bin"
    raw.write_bytes(np.array([4.0, 2.0]).tobytes())
    crafted = in_tmp / "crafted.h5"
    _crafted(crafted, how, raw if how == "external storage" else secret)
    with h5py.File(crafted) as f:  # the craft works: plain h5py reads the other file's numbers
        assert f["samples"][()].ravel().tolist() == ([0.0, 0.0] if how == "soft link" else [4.0, 2.0])
    for args in (["show", crafted], ["compare", crafted, "--json"], ["export", crafted, "-o", in_tmp / "out.nc"],
                 ["sample", "pflow", "-t", "gaussian", "-n", "10", "--steps", "3", "--likelihood", "--points",
                  crafted, "-o", in_tmp / "p.h5"]):
        r = invoke(*args)
        text = r.output + (r.stderr if r.stderr_bytes is not None else "")
        if args[0] == "compare":  # compare reports an unreadable file in its row, then exits 2
            assert "self-contained" in text and r.exit_code == 2, text
            continue
        assert r.exit_code == 2 and "self-contained" in text, (args[0], r.exit_code, text)
        assert "Traceback" not in text
    assert not (in_tmp / "out.nc").exists() and not (in_tmp / "p.h5").exists()


def test_an_honest_run_file_passes_the_self_containment_check(in_tmp):
    """Negative control: the files difflab writes are read (no link, external or virtual storage)."""
    r = invoke("sample", "ula", "-t", "gaussian", "-n", "20", "--steps", "3", "-o", "ok.h5", "-q")
    assert r.exit_code == 0 and invoke("show", "ok.h5").exit_code == 0


def test_compare_json_is_strict_json_even_with_non_finite_values(in_tmp):
    """exact_kl is infinite on xor3 with tau-leaping: compare --json (plain, --by, --at) parses with
    a strict parser (no NaN/Infinity literals), the value read back as the string "Infinity"."""
    for seed in (1, 2):
        r = invoke("sample", "discrete", "-t", "xor3", "-n", "50", "--steps", str(10 * seed), "-o", f"r{seed}.h5", "-q")
        assert r.exit_code == 0, r.output

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))

    rows = strict(invoke("compare", "r1.h5", "r2.h5", "--json").stdout)
    assert {row["summary"]["exact_kl"] if "summary" in row else row["exact_kl"] for row in rows} == {"Infinity"}
    strict(invoke("compare", "r1.h5", "r2.h5", "--json", "--by", "steps", "-m", "exact_kl").stdout)
    strict(invoke("compare", "r1.h5", "r2.h5", "--json", "--at", "15", "-m", "exact_tv").stdout)
    assert float("Infinity") == float("inf")  # how a Python reader gets the number back


@pytest.mark.system
def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(in_tmp):
    """A writer killed with SIGKILL leaves its temporary file: the next write of that name removes
    it; a live process's temporary, another host's and another name's are kept."""
    import difflab.run.io as dio

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = dio._HOST
    stale = in_tmp / f".x.h5.{host}-{dead.pid}.abc123.tmp"
    live = in_tmp / f".x.h5.{host}-{os.getpid()}.def456.tmp"
    other_host = in_tmp / f".x.h5.elsewhere-{dead.pid}.ghi789.tmp"
    other_name = in_tmp / f".y.h5.{host}-{dead.pid}.jkl012.tmp"
    for p in (stale, live, other_host, other_name):
        p.write_bytes(b"partial")
    dio.write_run(in_tmp / "x.h5", _tiny_run())
    assert not stale.exists() and live.exists() and other_host.exists() and other_name.exists()


@pytest.mark.system
def test_a_sigkilled_run_leaves_nothing_after_the_next_run(in_tmp):
    """SIGKILL during a long run leaves no file under the final name (the name stays free), and the
    next run of that name completes and leaves no temporary behind."""
    import signal
    import time

    argv = [sys.executable, "-m", "difflab", "sample", "ula", "-t", "gaussian", "-n", "200000", "--steps", "400",
            "-o", "k.h5", "-q"]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_handling_sigterm(p.pid)  # past the imports: the command has started
    time.sleep(3)  # and into the sampling loop
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (in_tmp / "k.h5").exists()
    # the next run of the name (smaller: its floors are computed on a fresh cache entry)
    r = subprocess.run([*argv[:8], "1000", "--steps", "20", "-o", "k.h5", "-q"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in in_tmp.iterdir()] == ["k.h5"]


def test_a_signal_during_the_write_never_throws_away_a_finished_run(in_tmp, monkeypatch):
    """Ctrl-C and then SIGTERM during the file write: the finished run is saved complete, and the
    command says so and exits 130. Negative control: the same signals with the deferral undone lose
    the run."""
    import signal

    from difflab.run import io as dio
    from difflab.run import sampling

    def signalling(real, *signums):
        def wrapper(*a, **kw):
            for s in signums:
                os.kill(os.getpid(), s)
            return real(*a, **kw)
        return wrapper

    monkeypatch.setattr(dio, "write_run", signalling(dio.write_run, signal.SIGINT, signal.SIGTERM))
    r = invoke("sample", "ula", "-t", "gaussian", "-n", "50", "--steps", "5", "-o", "late.h5")
    assert r.exit_code == 130, r.output
    assert "holds the complete run" in r.stderr
    rec = read_run(in_tmp / "late.h5")
    assert rec.attrs["status"] == "complete" and rec.attrs["steps_done"] == 5 and rec.summary

    monkeypatch.setattr(sampling, "_signals_deferred", lambda: __import__("contextlib").nullcontext([]))
    r = invoke("sample", "ula", "-t", "gaussian", "-n", "50", "--steps", "5", "-o", "lost.h5")
    assert r.exit_code != 0 and not (in_tmp / "lost.h5").exists()


@pytest.mark.parametrize("signum, code", [(2, 130), (15, 143)])
def test_a_signal_stops_a_summary_that_blocks(in_tmp, monkeypatch, signum, code):
    """Ctrl-C (or SIGTERM) while the summary runs a step that blocks (a user's score that hangs):
    the summary stops at once (the blocking wait is interrupted, not sat out), the run is saved with
    its samples, no metrics and status interrupted, the message says so, exit 130 (143)."""
    import threading

    from difflab.run import sampling

    never = threading.Event()
    outcome, real_summarise = [], sampling._summarise

    def blocking_summary(*a, **kw):
        try:
            os.kill(os.getpid(), signum)
            outcome.append("sat out" if not never.wait(600) else "set")  # held signals: 600 s, then fails
        except KeyboardInterrupt:
            outcome.append("interrupted")
            raise

    monkeypatch.setattr(sampling, "_summarise", blocking_summary)
    r = invoke("sample", "ula", "-t", "gaussian", "-n", "50", "--steps", "5", "-o", "s.h5")
    assert outcome == ["interrupted"] and r.exit_code == code, (outcome, r.output)
    assert "interrupted while summarising" in r.stderr and "no metrics" in r.stderr
    rec = read_run(in_tmp / "s.h5", samples=True)
    assert rec.attrs["status"] == "interrupted" and rec.attrs["steps_done"] == 5 and rec.summary == {}
    assert rec.samples.shape == (50, 2) and "summary was interrupted" in rec.attrs["warnings"]
    # run again: the same samples, now judged (the sweep's resume does this for an interrupted run)
    monkeypatch.setattr(sampling, "_summarise", real_summarise)
    r = invoke("sample", "ula", "-t", "gaussian", "-n", "50", "--steps", "5", "-o", "s.h5", "--if-exists", "skip")
    again = read_run(in_tmp / "s.h5", samples=True)
    assert r.exit_code == 0 and again.attrs["status"] == "complete" and again.summary
    assert (again.samples == rec.samples).all()


def test_seeds_outside_64_bits_are_refused_before_the_run(in_tmp):
    """--seed 2^64 used to run in full and then fail writing the attribute (the run lost): now one
    line, exit 2, nothing written; the largest 64-bit seed runs and is recorded exactly."""
    for bad in (2**64, 10**400, -1):
        r = invoke("sample", "ula", "-t", "gaussian", "-n", "10", "--steps", "2", "--seed", bad, "-o", "s.h5")
        assert r.exit_code == 2 and "--seed" in r.output and "Traceback" not in r.output, r.output
        assert not (in_tmp / "s.h5").exists()
    r = invoke("sample", "ula", "-t", "gaussian", "-n", "10", "--steps", "2", "--seed", 2**64 - 1, "-o", "s.h5", "-q")
    assert r.exit_code == 0 and read_run(in_tmp / "s.h5").attrs["seed"] == 2**64 - 1


def test_impossible_sizes_and_names_are_refused_before_the_run(in_tmp):
    """-n 10^12 (178,000 GiB of state) and a 230-byte file name (its temporary would pass the
    255-byte limit): one line each, exit 2, before any allocation or work; a 190-byte name and a
    10-particle run still go (negative control)."""
    r = invoke("sample", "ula", "-t", "gaussian", "-n", 10**12, "-o", "x.h5")
    assert r.exit_code == 2 and "--particles" in r.output and "GiB" in r.output, r.output
    r = invoke("sample", "ula", "-t", "gaussian", "-n", "10", "--steps", "2", "-o", "a" * 227 + ".h5")
    assert r.exit_code == 2 and "--out" in r.output and "bytes long" in r.output, r.output
    assert list(in_tmp.iterdir()) == []
    r = invoke("sample", "ula", "-t", "gaussian", "-n", "10", "--steps", "2", "-o", "a" * 187 + ".h5", "-q")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("craft", ["params list", "3-D samples", "2-D trajectory", "named pipe"])
def test_crafted_shapes_and_pipes_are_one_line_not_a_crash_or_a_hang(in_tmp, craft):
    """show, export and plot on a run file with a JSON list for params, 3-D /samples, a 2-D
    trajectory, or a named pipe called x.h5: one line, exit 2 (compare: an unreadable row), no
    traceback, no hang."""
    import difflab.run.io as dio

    path = in_tmp / "x.h5"
    if craft == "named pipe":
        os.mkfifo(path)
    else:
        dio.write_run(path, _tiny_run())
        with h5py.File(path, "a") as f:
            if craft == "params list":
                f["config"].attrs["params_json"] = "[1, 2]"
            elif craft == "3-D samples":
                del f["samples"]
                f["samples"] = np.zeros((2, 1, 1))
            else:
                del f["trajectory/positions"]
                f["trajectory/positions"] = np.zeros((2, 1))
    for args in (["show", path], ["export", path, "-o", in_tmp / "o.nc"], ["plot", path, "-o", in_tmp / "p.png"]):
        r = invoke(*args)
        text = r.output + r.stderr
        assert r.exit_code == 2 and "Traceback" not in text and str(path) in text, (args[0], r.exit_code, text)
    r = invoke("compare", path, "--json")
    assert "not a" in r.stdout and r.exit_code == 2
    assert not (in_tmp / "o.nc").exists() and not (in_tmp / "p.png").exists()


def _limited(cmd, cwd, kib=200):
    """Run difflab with a file-size limit (RLIMIT_FSIZE, as `ulimit -f`): writes past it fail with
    EFBIG, as on a full disk (Python ignores SIGXFSZ)."""
    import resource

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, kib * 1024))

    return subprocess.run([sys.executable, "-m", "difflab", *map(str, cmd)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, preexec_fn=cap, check=False)


@pytest.mark.system
def test_a_full_disk_is_one_line_exit_1_and_leaves_nothing(in_tmp):
    """sample, export and a serial and a parallel sweep under a 20 KiB file-size limit (run files
    of about 160 KB): one line per failure naming the real cause, exit 1, no segfault (export used to
    crash with 139 when a failed write left HDF5's cache inconsistent), no temporary or partial file
    left; the sweep reports every run with its cause and goes on. Negative control: without the
    limit all succeed."""
    r = _limited(["sample", "ula", "-t", "gaussian", "-n", "10000", "--steps", "5", "-o", "big.h5"], in_tmp, kib=20)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "File too large" in r.stderr, r.stderr[-400:]
    assert list(in_tmp.iterdir()) == []
    ok = invoke("sample", "ula", "-t", "gaussian", "-n", "10000", "--steps", "5", "-o", "ok.h5", "-q")
    assert ok.exit_code == 0
    r = _limited(["export", "ok.h5", "-o", "ok.nc"], in_tmp, kib=20)
    assert r.returncode == 1 and "File too large" in r.stderr and "Traceback" not in r.stderr, (r.returncode, r.stderr)
    assert sorted(p.name for p in in_tmp.iterdir()) == ["ok.h5"]
    (in_tmp / "s.yaml").write_text("sampler: ula\nset: {target: gaussian, particles: 10000, steps: 5}\n"
                                   "grid: {seed: [1, 2, 3]}\n")
    for jobs in ("1", "2"):
        r = _limited(["sweep", "s.yaml", "--jobs", jobs], in_tmp, kib=20)
        assert r.returncode == 1 and r.stderr.count("File too large") == 3 and "Traceback" not in r.stderr, r.stderr
    assert not (in_tmp / "runs").exists() or list((in_tmp / "runs").iterdir()) == []
    assert invoke("export", "ok.h5", "-o", "ok.nc").exit_code == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 300 KiB tmpfs (root only: skipped otherwise), unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mnt)],
                                           capture_output=True, check=False).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.system
def test_a_disk_that_fills_mid_write_is_one_line_exit_1(small_disk, tmp_path):
    """A 300 KiB disk holding a filler of 0 to 275 KiB, so a run file of about 70 KB and its export
    meet a full disk at a different point of each write (the HDF5 library used to segfault in some
    of them, exit 139): every command exits 0 with its file or 1 with one line naming the cause, and
    leaves no other file. Negative control: with little filler both fit and are written."""
    env = {**os.environ, "DIFFLAB_CACHE_DIR": str(tmp_path / "cache")}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "difflab", *map(str, args)], cwd=small_disk, env=env,
                              capture_output=True, text=True, timeout=300, check=False)

    def one_line_or_done(r, name, kept):
        left = sorted(p.name for p in small_disk.iterdir())
        assert r.returncode in (0, 1) and "Traceback" not in r.stderr, (kib, name, r.returncode, r.stderr[-500:])
        if r.returncode == 1:
            assert r.stderr.strip().count("\n") == 0 and "No space left" in r.stderr, (kib, name, r.stderr)
            assert left == kept, (kib, name, left)
        else:
            assert left == sorted([*kept, name]), (kib, name, left)
        return r.returncode

    outcomes = []
    for kib in range(0, 300, 25):
        (small_disk / "filler").write_bytes(b"\0" * (kib * 1024))
        r = cli("sample", "ula", "-t", "gaussian", "-n", 4000, "--steps", "5", "-o", "a.h5", "-q")
        code = one_line_or_done(r, "a.h5", ["filler"])
        export = None if code else one_line_or_done(cli("export", "a.h5", "-o", "a.nc"), "a.nc", ["a.h5", "filler"])
        outcomes.append((code, export))
        for p in small_disk.iterdir():
            p.unlink()
    assert outcomes[0] == (0, 0) and (1, None) in outcomes and (0, 1) in outcomes, outcomes


def test_compare_on_a_missing_file_or_an_empty_pattern_exits_2(in_tmp):
    """A path that does not exist (a typo, or a shell pattern that matched nothing): one line, exit 2,
    nothing printed on stdout; show says "no such file"."""
    r = invoke("compare", "nothere.h5")
    assert r.exit_code == 2 and "nothere.h5: no such run file" in r.stderr and r.stdout == ""
    r = invoke("compare", "runs/zzz*")
    assert r.exit_code == 2 and "a pattern that matched no file" in r.stderr
    r = invoke("show", "nothere.h5")
    assert r.exit_code == 2 and "nothere.h5: no such file" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.system
def test_version(tmp_path):
    """--version prints the package's version, from the CLI and from the entry point's fast path."""
    import subprocess
    import sys

    from difflab import __version__

    r = invoke("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"difflab {__version__}"
    code = "import sys; sys.argv = ['difflab', '--version']; from difflab.cli.entry import main; main()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"difflab {__version__}"


def test_if_exists_error_skip_overwrite(in_tmp):
    """--if-exists: error (the default: exit 2, the file untouched), skip (a finished run is left as
    it is and its path printed, exit 0; an interrupted one is run again), overwrite (= --force)."""
    args = ["sample", "ula", "-t", "gaussian", "-n", "20", "--steps", "10", "-q"]
    first = invoke(*args)
    path = first.stdout.strip()
    stamp = os.stat(path).st_mtime_ns
    r = invoke(*args)
    assert r.exit_code == 2 and "--if-exists skip" in r.stderr and os.stat(path).st_mtime_ns == stamp
    r = invoke(*args, "--if-exists", "skip")
    assert r.exit_code == 0 and r.stdout.strip() == path and os.stat(path).st_mtime_ns == stamp
    with h5py.File(path, "a") as f:
        f.attrs["status"] = "interrupted"
    r = invoke(*args, "--if-exists", "skip")
    assert r.exit_code == 0 and r.stdout.strip() == path
    with h5py.File(path) as f:
        assert f.attrs["status"] == "complete"  # run again
    stamp = os.stat(path).st_mtime_ns
    assert invoke(*args, "--if-exists", "overwrite").exit_code == 0 and os.stat(path).st_mtime_ns != stamp
    r = invoke(*args, "--if-exists", "skip", "--force")
    assert r.exit_code == 2 and "--force" in r.stderr
    assert invoke(*args, "--if-exists", "maybe").exit_code == 2


def test_spec_takes_quiet_force_and_out(in_tmp):
    """difflab sample --spec run.yaml accepts -q, --force and -o, as its own message suggests."""
    (in_tmp / "run.yaml").write_text("sampler: ula\ntarget: gaussian\nsteps: 10\nparticles: 20\n")
    r = invoke("sample", "--spec", "run.yaml", "-q")
    assert r.exit_code == 0 and r.stdout.strip().startswith("runs/ula-gaussian-")
    r = invoke("sample", "--spec", "run.yaml", "-q")
    assert r.exit_code == 2 and "exists" in r.stderr
    assert invoke("sample", "--spec", "run.yaml", "-q", "--force").exit_code == 0
    r = invoke("sample", "--spec", "run.yaml", "-q", "-o", "mine.h5")
    assert r.exit_code == 0 and r.stdout.strip() == "mine.h5" and (in_tmp / "mine.h5").is_file()
    r = invoke("sample", "-q", "ula")
    assert r.exit_code == 2 and "after the sampler" in r.stderr


def test_help_shows_the_choices():
    """A choice option's --help shows its values, e.g. ddpm's [beta-tilde|beta], not <str>."""
    out = runner.invoke(app, ["sample", "ddpm", "--help"], terminal_width=200).output
    assert "--variance [beta-tilde|beta]" in out and "--timestep-spacing [trailing|leading|linspace]" in out


def test_show_and_targets_as_json(in_tmp):
    """show --json and targets --json print strict JSON: the run's attrs, params, summary and its
    convergence warnings; every shipped target with its kind, dimension and size."""
    assert invoke("sample", "mala", *SMALL, "-o", "s.h5").exit_code == 0
    r = invoke("show", "s.h5", "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["attrs"]["sampler"] == "mala" and "acceptance_rate" in doc["summary"]
    assert doc["params"]["step_size"] > 0 and isinstance(doc["warnings"], list)
    r = invoke("targets", "--json")
    names = {t["name"]: t for t in json.loads(r.stdout)}
    assert names["gmm50"]["dim"] == 50 and names["ising6"]["states"] == 64 and names["gmm"]["components"] == 8


@pytest.mark.system
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_run_saves_the_run_and_exits_128_plus_it(tmp_path, sig, code):
    """SIGTERM (as a batch scheduler sends it) or SIGINT to a running sample: the file is written
    with status interrupted and the exit code is 128 + the signal (143, 130)."""
    import time

    p = subprocess.Popen([sys.executable, "-m", "difflab", "sample", "ula", "-t", "gaussian", "-n", "20000",
                          "--steps", "1000000", "-q", "-o", "s.h5"], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    wait_until_handling_sigterm(p.pid)  # past the imports: the command has started
    time.sleep(3)  # and into the sampling loop (its set-up takes well under this)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err[-400:]
    assert read_run(tmp_path / "s.h5").attrs["status"] == "interrupted"


@pytest.mark.system
def test_shell_completion_completes_commands_and_options():
    """Typer's completion (difflab --install-completion): the shell's request, as bash sends it,
    gets sampler commands and their options (the entry point's fast paths step aside)."""
    env = {**os.environ, "_DIFFLAB_COMPLETE": "complete_bash", "COMP_WORDS": "difflab sample ks", "COMP_CWORD": "2"}
    code = "import sys; sys.argv = ['difflab']; from difflab.cli.entry import main; main()"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.stdout.split() == ["ksampler"], out.stderr[-300:]
    env.update(COMP_WORDS="difflab sample ksampler --sol", COMP_CWORD="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.stdout.split() == ["--solver"], out.stderr[-300:]


@pytest.mark.parametrize("columns", [80, 100])
def test_compare_fits_the_terminal_and_shows_every_requested_metric(in_tmp, monkeypatch, columns):
    """Two samplers, five step sizes and two pflow solvers: one table group per sampler, only the
    parameters that vary within it (pflow's solver; ula's step_size, sorted), every requested metric
    in full (name and values) and no line wider than the terminal; with --wide one table a group."""
    for h in ("0.2", "0.05", "0.1", "0.02", "0.01"):
        assert invoke("sample", "ula", "-t", "gaussian", "-n", "50", "--steps", "20", "--step-size", h, "-q").exit_code == 0
    for solver in ("euler", "heun"):
        assert invoke("sample", "pflow", "-t", "gaussian", "-n", "50", "--steps", "5", "--solver", solver, "-q").exit_code == 0
    files = sorted(str(p) for p in (in_tmp / "runs").iterdir())
    monkeypatch.setenv("COLUMNS", str(columns))
    metrics = ["exact_w2", "exact_kl", "sliced_w2", "mean_error", "cov_rel_error", "energy"]
    r = invoke("compare", *files, *[a for m in metrics for a in ("-m", m)])
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert max(len(line) for line in out.splitlines()) <= columns
    assert "ula on gaussian: 5 runs" in out and "pflow on gaussian: 2 runs" in out
    for m in metrics:
        assert f" {m} " in out, m  # the header in full, never cut to "exact_…"
    pflow, ula = out[out.index("pflow on"):out.index("ula on")], out[out.index("ula on"):]  # files in name order
    steps = [float(x) for x in re.findall(r"│ [0-9a-f]{10}\.h5 │\s+([0-9.]+) │", ula)]
    assert steps[:5] == [0.01, 0.02, 0.05, 0.1, 0.2]  # sorted by the varying parameter
    assert "solver" not in ula and "step_size" not in pflow and "solver" in pflow
    with h5py.File(files[0]) as f:
        value = f["summary"].attrs["exact_w2"]
    from difflab.results.analysis import fmt

    assert any(fmt(float(value)) in line for line in out.splitlines())  # values in full
    wide = invoke("compare", *files, *[a for m in metrics for a in ("-m", m)], "--wide").stdout
    assert "(continued)" not in wide and all(f" {m} " in wide for m in metrics)


def test_sample_as_json(in_tmp):
    """sample --json prints the run as strict JSON on stdout (no table): its path, status, params,
    summary and convergence warnings, which also go to stderr."""
    r = invoke("sample", "mala", *SMALL, "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["status"] == "complete" and doc["params"]["step_size"] > 0
    assert "acceptance_rate" in doc["summary"] and (in_tmp / doc["run"]).is_file()
    assert all(w in r.stderr for w in doc["warnings"])


def test_sigterm_during_set_up_exits_143_and_writes_nothing(in_tmp, monkeypatch):
    """A SIGTERM that arrives before the sampling loop (while the run is being set up) ends the
    command with 143 like one during the run, and leaves no file (there is no run to save)."""
    from difflab.run import sampling

    def set_up_interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # handled by sample's own SIGTERM handler, in this thread
        raise AssertionError("the SIGTERM handler did not interrupt the set-up")

    monkeypatch.setattr(sampling, "execute", set_up_interrupted)
    r = invoke("sample", "ula", "-t", "gaussian", "-n", "50", "--steps", "5", "-o", "x.h5")
    assert r.exit_code == 143 and "interrupted before the run started; nothing written" in r.stderr, r.output
    assert not (in_tmp / "x.h5").exists()


@pytest.mark.system
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_respect_the_umask(in_tmp, umask):
    """Run files, exports and figures get 0666 less the umask, like any Unix tool's (they were 0600
    whatever the umask: mkstemp's mode), in a child process with that umask."""
    code = (f"import os, sys; os.umask({umask}); sys.argv = ['difflab'] + sys.argv[1:]; "
            "from difflab.cli.app import main; main()")
    for args, out in ((["sample", "ula", "-t", "gaussian", "-n", "20", "--steps", "3", "-q", "-o", "r.h5"], "r.h5"),
                      (["export", "r.h5", "-o", "r.nc"], "r.nc")):
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stderr
        assert (in_tmp / out).stat().st_mode & 0o777 == 0o666 & ~umask, (out, oct((in_tmp / out).stat().st_mode))


def test_names_longer_than_the_file_system_allows_are_one_line(in_tmp):
    """300-character names (ENAMETOOLONG) as a run file, a folder of one, a target, a sweep spec, a
    run to read, an export or figure: one line, exit 2 (1 for a write that could not happen), no
    traceback, nothing written. They were tracebacks for sample -o and -t."""
    long = "a" * 300
    invoke("sample", "ula", "-t", "gaussian", "-n", "20", "--steps", "3", "-q", "-o", "r.h5")
    before = sorted(p.name for p in in_tmp.iterdir())
    for args in (["sample", "ula", "-t", "gaussian", "-n", "20", "--steps", "3", "-o", f"{long}.h5"],
                 ["sample", "ula", "-t", "gaussian", "-n", "20", "--steps", "3", "-o", f"{long}/x.h5"],
                 ["sample", "ula", "-t", f"{long}.yaml"], ["sample", "ula", "-t", f"{long}/x.yaml"],
                 ["show", f"{long}/x.h5"], ["compare", f"{long}.h5"], ["sweep", f"{long}.yaml"],
                 ["export", "r.h5", "-o", f"{long}/x.nc"], ["plot", "r.h5", "-o", f"{long}.png"]):
        r = invoke(*args)
        assert r.exit_code in (1, 2) and not isinstance(r.exception, OSError), (args[:2], r.exception, r.output)
        assert "Traceback" not in r.output and len(r.output.strip().splitlines()) <= 3, (args[:2], r.output)
    assert sorted(p.name for p in in_tmp.iterdir()) == before


def test_a_dangling_link_as_out_is_refused_not_sidestepped(in_tmp):
    """-o naming a dangling symbolic link: one line, exit 2, nothing written (it was saved as
    '<name>-1.h5' with a false 'written by another process' warning); --force replaces the link
    itself (never writes through it)."""
    (in_tmp / "r.h5").symlink_to(in_tmp / "nowhere" / "x.h5")
    r = invoke("sample", "ula", "-t", "gaussian", "-n", "20", "--steps", "3", "-q", "-o", "r.h5")
    assert r.exit_code == 2 and "symbolic link to nothing" in r.output, r.output
    assert sorted(p.name for p in in_tmp.iterdir()) == ["r.h5"] and (in_tmp / "r.h5").is_symlink()
    r = invoke("sample", "ula", "-t", "gaussian", "-n", "20", "--steps", "3", "-q", "-o", "r.h5", "--force")
    assert r.exit_code == 0 and not (in_tmp / "r.h5").is_symlink() and not (in_tmp / "nowhere").exists()
    assert read_run(in_tmp / "r.h5").attrs["steps_done"] == 3
