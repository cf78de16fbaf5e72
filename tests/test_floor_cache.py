"""The exact-draw floor cache: one entry per (target, particle count, metric settings), shared by
every run on them; atomic under concurrent writers; never trusting a damaged or foreign entry; the
same floors with the cache off."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import difflab
from difflab.cli.app import app
from difflab.maths import metrics
from difflab.run.floors import FloorCache, Judge
from difflab.run.io import read_run
from difflab.targets.files import load_target

runner = CliRunner()


def _floors(run) -> dict:
    return {k: v for k, v in run.summary.items() if k.startswith("floor_")}


def test_two_runs_of_a_sweep_share_one_entry(tmp_path):
    """Runs with other step sizes and seeds read the entry the first one wrote: the same floors, bit
    for bit, and one file in the cache."""
    cache = tmp_path / "cache"
    a = difflab.sample("mala", target="gmm", particles=64, steps=20, step_size=0.1, seed=0, cache=cache)
    b = difflab.sample("mala", target="gmm", particles=64, steps=20, step_size=0.3, seed=7, cache=cache)
    entries = list(cache.glob("floors-*.json"))
    assert len(entries) == 1
    assert a.attrs["floor_source"] == b.attrs["floor_source"] == f"cache {entries[0].name}"
    assert _floors(a) == _floors(b) and len(_floors(a)) >= 16
    c = difflab.sample("mala", target="gmm", particles=80, steps=20, cache=cache)  # another size: another entry
    assert len(list(cache.glob("floors-*.json"))) == 2 and _floors(c) != _floors(a)


def test_the_cached_floors_are_the_floors_of_their_own_stream(tmp_path):
    """An entry holds floor_stats of the suite on DRAWS sets drawn from the key's own seed:
    recomputed independently here, equal to round-off (the metrics are deterministic)."""
    _, target = load_target("gaussian")
    judge = Judge(target, 200, FloorCache(tmp_path), np.random.default_rng(0))
    got, source, warnings = judge.floors(target.sample, np.random.default_rng(1))
    assert source == f"cache {next(tmp_path.glob('floors-*.json')).name}" and warnings == []
    from difflab.run.floors import DRAWS, _generator

    want = metrics.floor_stats(judge.suite.final, target.sample, _generator(judge.key), 200, draws=DRAWS)
    assert got.keys() == want.keys() and all(np.isclose(got[k], want[k], rtol=1e-12, atol=0) for k in got)
    again = Judge(target, 200, FloorCache(tmp_path), np.random.default_rng(5))
    assert again.entry is not None and again.floors(target.sample, None)[0] == got


def test_no_cache_gives_the_same_floors_and_writes_nothing(tmp_path):
    cached = difflab.sample("ula", target="gaussian", particles=64, steps=20, cache=tmp_path / "c")
    fresh = difflab.sample("ula", target="gaussian", particles=64, steps=20, seed=3, cache=False)
    assert _floors(cached) == _floors(fresh) and fresh.attrs["floor_source"] == "computed (no cache)"
    out = tmp_path / "r.h5"
    r = runner.invoke(app, ["sample", "ula", "-t", "gaussian", "-n", "64", "--steps", "20", "--no-cache", "-q",
                            "-o", str(out)], env={"DIFFLAB_CACHE_DIR": str(tmp_path / "env")})
    assert r.exit_code == 0, r.output
    assert _floors(read_run(out)) == _floors(cached) and not (tmp_path / "env").exists()
    r = runner.invoke(app, ["sample", "ula", "--no-cache", "--cache-dir", str(tmp_path), "-o", str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "--no-cache: not with --cache-dir" in r.output


def _tamper(path, key, factor):
    """One floor scaled, the checksum left as it was."""
    doc = json.loads(path.read_text())
    doc["floors"][key] *= factor
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("damage, problem", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not valid JSON"),
    (lambda p: _tamper(p, "floor_mean_error", 2.0), "checksum mismatch"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "floors": {"floor_mean_error": 0.0}})),
     "checksum mismatch"),
    (lambda p: p.write_text(json.dumps({"format": "something else"})), "not a difflab floor-cache entry"),
])
def test_a_damaged_entry_is_recomputed_with_one_warning(tmp_path, damage, problem):
    cache = tmp_path / "cache"
    good = difflab.sample("ula", target="gaussian", particles=64, steps=20, cache=cache)
    entry, = cache.glob("floors-*.json")
    damage(entry)
    out = tmp_path / "r.h5"
    r = runner.invoke(app, ["sample", "ula", "-t", "gaussian", "-n", "64", "--steps", "20", "--cache-dir", str(cache),
                            "-o", str(out)])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stderr.splitlines() if "floor cache entry" in ln]
    assert len(lines) == 1 and problem in lines[0] and "recomputed" in lines[0]
    assert _floors(read_run(out)) == _floors(good)  # the same floors, recomputed
    assert difflab.sample("ula", target="gaussian", particles=64, steps=20, cache=cache).attrs[
        "floor_source"].startswith("cache")  # and the entry rewritten whole


def test_a_foreign_entry_under_the_name_is_not_trusted(tmp_path):
    """A valid entry of another key, copied under this key's name, is recomputed."""
    cache = tmp_path / "cache"
    difflab.sample("ula", target="gaussian", particles=64, steps=20, cache=cache)
    other, = cache.glob("floors-*.json")
    run = difflab.sample("ula", target="gaussian", particles=65, steps=20, cache=cache)
    mine = cache / run.attrs["floor_source"].removeprefix("cache ")
    mine.write_bytes(other.read_bytes())
    again = difflab.sample("ula", target="gaussian", particles=65, steps=20, cache=cache)
    assert _floors(again) == _floors(run)
    assert any("another key's entry" in w for w in json.loads(again.attrs["warnings"]))


@pytest.mark.system
def test_eight_concurrent_runs_leave_one_valid_entry_and_eight_run_files(tmp_path):
    """Eight processes start together on an empty cache and race to create the same entry."""
    env = {**os.environ, "DIFFLAB_CACHE_DIR": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-m", "difflab", "sample", "mala", "-t", "gmm", "-n", "100", "--steps",
                               "30", "--seed", str(i), "-q", "-o", f"r{i}.h5"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(8)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    entries = list((tmp_path / "cache").glob("floors-*.json"))
    assert len(entries) == 1 and not list((tmp_path / "cache").glob(".floors-*"))
    runs = [read_run(tmp_path / f"r{i}.h5") for i in range(8)]
    assert all(r.status == "complete" for r in runs)
    assert all(_floors(r) == _floors(runs[0]) for r in runs)
    again = difflab.sample("mala", target="gmm", particles=100, steps=30, cache=tmp_path / "cache")
    assert again.attrs["floor_source"] == f"cache {entries[0].name}" and _floors(again) == _floors(runs[0])


def test_the_cache_command_shows_and_clears(tmp_path):
    cache = tmp_path / "cache"
    difflab.sample("ula", target="gaussian", particles=64, steps=10, cache=cache)
    r = runner.invoke(app, ["cache", "--cache-dir", str(cache), "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["folder"] == str(cache) and len(doc["entries"]) == 1
    assert doc["entries"][0]["target"] == "gaussian" and doc["entries"][0]["particles"] == 64
    assert doc["entries"][0]["problem"] is None
    entry, = cache.glob("floors-*.json")
    _tamper(entry, "floor_mean_error", 2.0)  # shown as damaged, read with the runs' own bounds
    shown = json.loads(runner.invoke(app, ["cache", "--cache-dir", str(cache), "--json"]).stdout)["entries"][0]
    assert shown["problem"].startswith("checksum mismatch") and shown["target"] == "?"
    r = runner.invoke(app, ["cache", "--cache-dir", str(cache), "--clear"])
    assert r.exit_code == 0 and "removed 1 entry" in r.stdout and not list(cache.glob("floors-*"))


def test_a_law_built_in_python_keeps_the_runs_own_streams(tmp_path):
    """Guidance judges against p(x | c), a law with no file: its floors come from the run's own
    stream, no entry is written for it, and the run says so."""
    run = difflab.sample("ddpm", target="gmm-classes", particles=64, steps=20, guidance="cfg", class_="right",
                         cache=tmp_path)
    assert run.attrs["floor_source"] == "computed (the run's own stream)" and not list(tmp_path.glob("floors-*"))


@pytest.mark.slow
def test_the_false_alarm_rate_of_an_exact_sampler_is_small(tmp_path):
    """300 sets of 1,000 exact i.i.d. draws of `gaussian` (an exact sampler) judged against the
    cached floors (100 sets): a metric is marked (> 5 SE above its floor) on at most 3 % of them.
    Measured about 0.7 % (README); with a true rate of 1 % the bound fails with probability
    P(Binomial(300, 0.01) > 9) < 0.1 %. Negative control: the same criterion rejects a sampler with
    a 10 % error in its spread (the draws scaled by 1.1 about the mean): marked on far more than
    3 % of 50 sets (measured: 44 of 50)."""
    from difflab.run.checks import far_above_floor
    from difflab.run.floors import DRAWS

    _, target = load_target("gaussian")
    judge = Judge(target, 1000, FloorCache(tmp_path), np.random.default_rng(0))
    floors = {**judge.floors(target.sample, None)[0], "floor_draws": DRAWS}
    marked = biased = 0
    for seed in range(300):
        x = target.sample(np.random.default_rng(10_000 + seed), 1000)
        marked += bool(far_above_floor({**judge.suite.final(x), **floors}))
        if seed < 50:
            y = target.mean + 1.1 * (x - target.mean)
            biased += bool(far_above_floor({**judge.suite.final(y), **floors}))
    assert marked <= 9, marked
    assert biased > 0.03 * 50, biased


def test_an_entry_of_an_older_version_is_recomputed_silently(tmp_path):
    """An entry written by an older difflab (same key and seeds, an older format version) is not
    damaged, only outdated: the run recomputes it without a warning (the same floors: the seeds do
    not depend on the version), and `difflab cache` shows it as outdated meanwhile."""
    from difflab.run import floors

    cache = tmp_path / "c"
    first = difflab.sample("ula", target="gaussian", particles=64, steps=5, cache=cache)
    (entry,) = cache.glob("floors-*.json")
    doc = json.loads(entry.read_text())
    doc["version"] = floors.VERSION - 1
    entry.write_text(json.dumps(doc))
    shown = json.loads(runner.invoke(app, ["cache", "--cache-dir", str(cache), "--json"]).stdout)
    assert "outdated" in shown["entries"][0]["problem"]
    again = difflab.sample("ula", target="gaussian", particles=64, steps=5, cache=cache)
    assert json.loads(again.attrs["warnings"]) == json.loads(first.attrs["warnings"])  # no cache warning
    assert _floors(again) == _floors(first) and json.loads(entry.read_text())["version"] == floors.VERSION
    doc["version"] = floors.VERSION + 1  # negative control: a newer version is not ours: a warning
    entry.write_text(json.dumps(doc))
    later = difflab.sample("ula", target="gaussian", particles=64, steps=5, cache=cache)
    assert any("format version" in w for w in json.loads(later.attrs["warnings"]))
