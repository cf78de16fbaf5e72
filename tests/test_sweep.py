"""difflab sweep: grid expansion, same runs as difflab sample, resumption, parallel runs, failures."""

import re

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from difflab.cli.app import app
from difflab.errors import ConfigError
from difflab.run.io import read_run
from difflab.run.sweep import expand

runner = CliRunner()
SPEC = """sampler: ula
set: {target: gaussian, particles: 50, init: target, steps: 40}
grid: {step_size: [0.01, 0.04], seed: [0, 1]}
"""


def test_grid_times_zip():
    runs = expand("sampler: pflow\ngrid: {seed: [0, 1, 2]}\nzip: {steps: [10, 20], solver: [euler, heun]}\n",
                  "s.yaml")
    assert len(runs) == 6
    assert {(r.args["seed"], r.args["steps"], r.args["solver"]) for r in runs} == \
        {(s, n, m) for s in (0, 1, 2) for n, m in ((10, "euler"), (20, "heun"))}
    assert all(r.args["particles"] == 1000 and r.args["early_stop"] == 1e-3 for r in runs)  # command defaults


@pytest.mark.parametrize("text, message", [
    ("sampler: ula\ngrid: {step_sise: [0.1]}\n", "grid.step_sise: not an option of difflab sample ula (did you mean"),
    ("sampler: ula\nzip: {seed: [0, 1], steps: [10]}\n", "zip: the lists must have one length"),
    ("sampler: ula\nset: {seed: 1}\ngrid: {seed: [0, 1]}\n", "grid.seed: already given in set"),
    ("sampler: ula\nset: {out: x.h5}\n", "set.out: not settable in a sweep"),
    ("sampler: ula\nset: {steps: 1.5}\n", "set.steps: expected an integer, got 1.5"),
    ("sampler: ula\ngrid: {seed: 3}\n", "grid.seed: expected a non-empty list"),
    ("sampler: ulla\n", "sampler: expected one of"),
    ("sampler: ula\ngird: {}\n", "gird: unknown key (did you mean 'grid'?)"),
])
def test_spec_errors_name_the_key(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        expand(text, "s.yaml")


def _sweep(tmp_path, text, *args):
    (tmp_path / "s.yaml").write_text(text)
    return runner.invoke(app, ["sweep", "s.yaml", *args])


def test_sweep_runs_are_the_sample_commands_runs(tmp_path, monkeypatch):
    """Same options -> the same file name and bit-identical samples as difflab sample."""
    monkeypatch.chdir(tmp_path)
    r = _sweep(tmp_path, SPEC)
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "runs").glob("*.h5"))
    assert len(files) == 4
    x = read_run(files[0], samples=True)
    h, seed = x.params["step_size"], x.attrs["seed"]
    r = runner.invoke(app, ["sample", "ula", "-t", "gaussian", "-n", "50", "--init", "target", "--steps", "40",
                            "--step-size", str(h), "--seed", str(seed), "-q", "-o", str(tmp_path / "same.h5")])
    assert r.exit_code == 0
    np.testing.assert_array_equal(read_run(tmp_path / "same.h5", samples=True).samples, x.samples)
    r = runner.invoke(app, ["sample", "ula", "-t", "gaussian", "-n", "50", "--init", "target", "--steps", "40",
                            "--step-size", str(h), "--seed", str(seed)])
    assert r.exit_code == 2 and files[0].name in r.output  # the default name is the sweep's file


def test_interrupted_sweep_resumes(tmp_path, monkeypatch):
    """Second pass: finished runs skipped, a deleted run and an interrupted one run again."""
    monkeypatch.chdir(tmp_path)
    assert _sweep(tmp_path, SPEC).exit_code == 0
    files = sorted((tmp_path / "runs").glob("*.h5"))
    files[0].unlink()
    with h5py.File(files[1], "a") as f:
        f.attrs["status"] = "interrupted"
    stamp = files[2].stat().st_mtime_ns
    r = _sweep(tmp_path, SPEC)
    assert r.exit_code == 0 and "4 runs: 2 to run, 2 already done (skipped)" in r.output, r.output
    assert files[0].exists() and read_run(files[1]).attrs["status"] == "complete"
    assert files[2].stat().st_mtime_ns == stamp


@pytest.mark.system
def test_parallel_sweep_writes_the_same_distinct_files(tmp_path, monkeypatch):
    """--jobs 2 (two processes) writes the same four files as --jobs 1, with identical samples."""
    for jobs in ("1", "2"):
        d = tmp_path / jobs
        d.mkdir()
        monkeypatch.chdir(d)
        r = _sweep(d, SPEC, "--jobs", jobs)
        assert r.exit_code == 0, r.output
    one, two = (sorted((tmp_path / j / "runs").glob("*.h5")) for j in ("1", "2"))
    assert [f.name for f in one] == [f.name for f in two] and len(one) == 4
    for a, b in zip(one, two):
        np.testing.assert_array_equal(read_run(a, samples=True).samples, read_run(b, samples=True).samples)


def test_a_failing_run_is_listed_and_the_others_finish(tmp_path, monkeypatch):
    """Two classes with the same component law: p(c | x) = 1/2 everywhere, so the guidance reference
    at scale 40 accepts 2^-40 of its proposals and that run fails; the scale-1 run completes."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "same.yaml").write_text("kind: gmm\ncomponents:\n  - {weight: 0.5, mean: [0.0], cov: 1.0}\n"
                                        "  - {weight: 0.5, mean: [0.0], cov: 1.0}\nclasses: {a: [0], b: [1]}\n")
    r = _sweep(tmp_path, "sampler: ddpm\nset: {target: same.yaml, guidance: cfg, class: a, particles: 20, steps: 5}\n"
                         "grid: {scale: [40, 1]}\n")
    assert r.exit_code == 1, r.output
    assert "1 run(s) failed" in r.output and "scale=40" in r.output and "lower --scale" in r.output
    assert len(list((tmp_path / "runs").glob("*.h5"))) == 1


def test_a_bad_run_stops_the_sweep_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = _sweep(tmp_path, SPEC.replace("[0.01, 0.04]", "[0.01, -1.0]"))
    assert r.exit_code == 2 and "step_size=-1.0" in r.output and "--step-size: must be positive" in r.output
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*.h5"))


@pytest.fixture(scope="module")
def dask_cluster():
    """A two-worker Dask LocalCluster of separate processes (the extra difflab[dask])."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@pytest.mark.system
def test_dask_sweep_writes_the_same_files_as_a_local_one(tmp_path, monkeypatch, dask_cluster):
    """--dask on a LocalCluster: the same distinct files and bit-identical samples as --jobs 1, a
    target file given by a relative path is found by the workers, a resumed sweep skips them all."""
    for mode in ("local", "dask"):
        d = tmp_path / mode
        d.mkdir()
        monkeypatch.chdir(d)
        (d / "g.yaml").write_text("kind: gaussian\nmean: [1.0, -1.0]\ncov: [[1.0, 0.3], [0.3, 0.5]]\n")
        spec = SPEC.replace("target: gaussian", "target: g.yaml")
        r = _sweep(d, spec) if mode == "local" else _sweep(d, spec, "--dask", dask_cluster.scheduler_address)
        assert r.exit_code == 0, r.output
    local, dask = (sorted((tmp_path / m / "runs").glob("*.h5")) for m in ("local", "dask"))
    assert [f.name for f in local] == [f.name for f in dask] and len(dask) == 4
    for a, b in zip(local, dask):
        np.testing.assert_array_equal(read_run(a, samples=True).samples, read_run(b, samples=True).samples)
    r = _sweep(tmp_path / "dask", SPEC.replace("target: gaussian", "target: g.yaml"), "--dask",
               dask_cluster.scheduler_address)
    assert r.exit_code == 0 and "4 runs: 0 to run, 4 already done" in r.output, r.output


@pytest.mark.system
def test_dask_failures_are_listed(tmp_path, monkeypatch, dask_cluster):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "same.yaml").write_text("kind: gmm\ncomponents:\n  - {weight: 0.5, mean: [0.0], cov: 1.0}\n"
                                        "  - {weight: 0.5, mean: [0.0], cov: 1.0}\nclasses: {a: [0], b: [1]}\n")
    r = _sweep(tmp_path, "sampler: ddpm\nset: {target: same.yaml, guidance: cfg, class: a, particles: 20, steps: 5}\n"
                         "grid: {scale: [40, 1]}\n", "--dask", dask_cluster.scheduler_address)
    assert r.exit_code == 1 and "1 run(s) failed" in r.output and "lower --scale" in r.output, r.output
    assert len(list((tmp_path / "runs").glob("*.h5"))) == 1


@pytest.mark.system
def test_dask_bad_address_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("difflab.run.sweep.DASK_TIMEOUT_S", 1)
    r = _sweep(tmp_path, SPEC, "--dask", "tcp://127.0.0.1:1")
    assert r.exit_code == 2 and "--dask: cannot connect to the scheduler at 'tcp://127.0.0.1:1'" in r.output, r.output
    assert not (tmp_path / "runs").exists()


def test_one_display_counts_every_finished_run():
    from difflab.cli.report import sweep_display as _sweep_display

    progress, on_done = _sweep_display(3, live=True)
    with progress:
        for i, failed in enumerate((False, True, False)):
            on_done(f"run {i}", failed)
    task = progress.tasks[0]
    assert task.completed == 3 and task.total == 3 and task.fields["failed"] == "1 failed"


# ---------------------------------------------------------------- stopping (issue 19, item 5)
STOP_SPEC = "sampler: ula\nset: {target: gaussian, particles: 200000, steps: 300}\ngrid: {seed: [1, 2, 3, 4, 5, 6, 7, 8]}\n"


def _session(sid: int) -> list[int]:
    """The live processes of a session (Linux /proc): the sweep and its workers."""
    import os

    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getsid(int(d)) == sid:
                    found.append(int(d))
            except OSError:
                pass
    return found


def _start_sweep(tmp_path, jobs: str):
    import subprocess
    import sys

    (tmp_path / "s.yaml").write_text(STOP_SPEC)
    return subprocess.Popen([sys.executable, "-m", "difflab", "sweep", "s.yaml", "--jobs", jobs], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.system
@pytest.mark.parametrize("jobs, how", [("2", "ctrl-c"), ("1", "ctrl-c"), ("2", "sigterm")])
def test_a_sweep_stops_on_the_first_signal(tmp_path, jobs, how):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) or SIGTERM to the sweep
    alone, 4 s into 8 runs of about 3 s: exit 130 (Ctrl-C) or 143 (SIGTERM) within 30 s; no queued run starts (far fewer than
    8 files); each file is complete or interrupted, and the summary counts done, interrupted and not
    started, summing to 8."""
    import os
    import re
    import signal
    import time

    p = _start_sweep(tmp_path, jobs)
    time.sleep(4)
    if how == "ctrl-c":
        os.killpg(p.pid, signal.SIGINT)
    else:
        p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == (130 if how == "ctrl-c" else 143), err[-600:]  # 128 + the signal
    m = re.search(r"sweep stopped: (\d+) done, (\d+) interrupted .* (\d+) not started", err)
    assert m, err[-600:]
    done, interrupted, waiting = map(int, m.groups())
    assert done + interrupted + waiting == 8 and waiting >= 4, err[-600:]
    files = list((tmp_path / "runs").glob("*.h5"))
    statuses = sorted(read_run(f).attrs["status"] for f in files)
    assert len(files) == done + interrupted and set(statuses) <= {"complete", "interrupted"}
    deadline = time.time() + 10  # multiprocessing's resource tracker leaves a moment after the sweep
    while _session(p.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert _session(p.pid) == []  # no worker left behind


@pytest.mark.system
def test_workers_exit_when_the_sweep_is_killed(tmp_path):
    """SIGKILL to the sweep (no chance to clean up): its workers notice within a second, save their
    runs as interrupted (a second SIGINT a second later stops the summary too) and exit; no further
    run is started (before: orphans ran on for 100 s)."""
    import os
    import signal
    import time

    p = _start_sweep(tmp_path, "2")
    time.sleep(5)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    deadline = time.time() + 120  # a guard against a hang, not a timing: the event is the workers' exit
    while _session(p.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert _session(p.pid) == []
    files = sorted((tmp_path / "runs").glob("*.h5"))
    time.sleep(3)
    assert sorted((tmp_path / "runs").glob("*.h5")) == files and len(files) <= 4


def test_a_grid_too_large_is_refused_before_anything_is_built(monkeypatch):
    """A 10^9-run grid (six axes): one ConfigError line from the product of the axis lengths,
    before any run is built (it took 722 MB and never started at 10^6, MemoryError at 10^9); at
    the cap the grid expands (negative control, with the cap lowered to 8)."""
    from difflab.errors import ConfigError
    from difflab.run import sweep as sw

    axes = "\n".join(f"  {k}: [{', '.join(map(str, range(1, 33)))}]"
                     for k in ("seed", "steps", "metrics_every", "save_every", "trajectory_particles"))
    text = f"sampler: ula\nset: {{target: gaussian, particles: 10}}\ngrid:\n{axes}\n  step_size: [0.1, 0.2, 0.3]\n"
    with pytest.raises(ConfigError, match="100,663,296 runs; expected at most 100,000"):
        sw.expand(text, "big.yaml")
    monkeypatch.setattr(sw, "MAX_RUNS", 8)
    small = "sampler: ula\ngrid:\n  seed: [1, 2]\n  steps: [3, 4]\nzip:\n  step_size: [0.1, 0.2]\n  particles: [10, 20]\n"
    assert len(sw.expand(small, "small.yaml")) == 8
    with pytest.raises(ConfigError, match="12 runs"):
        sw.expand(small.replace("seed: [1, 2]", "seed: [1, 2, 3]"), "small.yaml")


def test_a_stopped_sweep_summarises_its_not_started_runs(capsys):
    """A stopped sweep of 500 runs lists 10 not-started ones and counts the rest in one line (it
    printed a line per run)."""
    from difflab.cli import report
    from difflab.run import sweep as sw

    runs = sw.expand("sampler: ula\ngrid:\n  seed: [" + ", ".join(map(str, range(500))) + "]\n", "s.yaml")
    todo = [(run, None) for run in runs]
    report.sweep_outcome(sw, todo, {0: ("runs/a.h5", "complete", "")}, stopped=True)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("sweep stopped: 1 done, 0 interrupted") and "499 not started" in err[0]
    assert sum(line.startswith("  not started:") for line in err) == report.SHOWN_NOT_STARTED
    assert err[-1] == "  ... and 489 more not started (runs 11-499); re-run the sweep to do them"
