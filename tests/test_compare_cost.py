"""compare --at COST / --tol T: ranking at a fixed cost and cost to a tolerance; metric kinds."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from difflab.cli.app import app
from difflab.results.analysis import cost_rank, metric_kind

runner = CliRunner()


def _rows(series):
    """Synthetic compare rows: {solver: [(nfe, error), ...]} (two seeds each, equal errors)."""
    rows = []
    for solver, pts in series.items():
        for steps, (nfe, err) in enumerate(pts, 1):
            for seed in (0, 1):
                rows.append({"run": f"{solver}-{steps}-{seed}", "sampler": "pflow", "target": "g", "seed": seed,
                             "status": "complete", "steps_done": steps, "params": {"solver": solver, "steps": steps},
                             "summary": {"exact_w2": err, "nfe": nfe}})
    return rows


def test_power_laws_are_interpolated_exactly_and_ranked():
    """err = 1/c (first order) and 10/c^2 (second order) measured at a few costs: log-log
    interpolation is exact for power laws, so at c = 100 the errors are 0.01 and 0.001 (second order
    ranks first) and the costs to reach 2e-3 are 500 and sqrt(5000) = 70.7."""
    a = [(c, 1 / c) for c in (10, 40, 160, 640)]
    b = [(c, 10 / c**2) for c in (20, 50, 200)]
    r = cost_rank(_rows({"euler": a, "heun": b}), "exact_w2", at=100, tol=2e-3)
    first, second = r["series"]
    assert first["series"] == {"solver": "heun"} and second["series"] == {"solver": "euler"}
    assert first["error_at"] == pytest.approx(1e-3, rel=1e-12) and second["error_at"] == pytest.approx(1e-2, rel=1e-12)
    assert first["cost_to_tol"] == pytest.approx(5000**0.5, rel=1e-12)
    assert second["cost_to_tol"] == pytest.approx(500, rel=1e-12) and second["reached"] == "interpolated"
    assert all(p["n"] == 2 for s in r["series"] for p in s["points"])  # seeds averaged


def test_no_extrapolation_and_default_cost():
    """Outside a series' measured costs there is no value (negative control against extrapolating);
    the default cost is the largest that every series reaches; a tolerance below every point is
    'not reached', one above the cheapest point is reached there."""
    a = [(c, 1 / c) for c in (10, 40, 160)]
    b = [(c, 10 / c**2) for c in (20, 50, 200)]
    r = cost_rank(_rows({"euler": a, "heun": b}), "exact_w2", at=300, tol=1e-9)
    assert all(s["error_at"] is None and s["cost_to_tol"] is None for s in r["series"])
    r = cost_rank(_rows({"euler": a, "heun": b}), "exact_w2", tol=0.5)
    assert r["at"] == 160 and {s["series"]["solver"]: s["reached"] for s in r["series"]} == \
        {"euler": "at the cheapest", "heun": "at the cheapest"}
    assert r["series"][0]["error_at"] == pytest.approx(10 / 160**2, rel=1e-12)


def test_ranking_real_solvers_at_equal_cost(tmp_path):
    """pflow on a Gaussian (exact_w2 of the exact law): at 80 score evaluations rk4 < heun < euler,
    and the ranking is by cost (nfe: 4 / 2 / 1 per step), not by steps: heun at 40 steps and
    euler at 80 steps are the same cost."""
    for solver, steps in (("euler", (20, 40, 80)), ("heun", (10, 20, 40)), ("rk4", (5, 10, 20))):
        for k in steps:
            r = runner.invoke(app, ["sample", "pflow", "-t", "gaussian", "-n", "50", "--solver", solver, "--steps",
                                    str(k), "-q", "-o", str(tmp_path / f"{solver}-{k}.h5")])
            assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["compare", *map(str, tmp_path.glob("*.h5")), "-m", "exact_w2", "--at", "80", "--json"])
    assert r.exit_code == 0, r.output
    ranked = json.loads(r.output)
    assert [s["series"]["solver"] for s in ranked["series"]] == ["rk4", "heun", "euler"]
    at80 = {s["series"]["solver"]: s["error_at"] for s in ranked["series"]}
    from difflab.run.io import read_run

    for solver, k in (("euler", 80), ("heun", 40), ("rk4", 20)):  # measured there: no interpolation
        assert at80[solver] == pytest.approx(read_run(tmp_path / f"{solver}-{k}.h5").summary["exact_w2"], rel=1e-12)
    r = runner.invoke(app, ["compare", *map(str, tmp_path.glob("*.h5")), "-m", "exact_w2", "--at", "80", "--tol", "1e-2"])
    assert r.exit_code == 0 and "exact_w2 (exact) against nfe, at nfe = 80" in r.output, r.output


@pytest.mark.parametrize("args, message", [
    (["--at", "50"], "--at/--tol: needs exactly one --metric"),
    (["--at", "50", "-m", "exact_w3"], "--metric: no run has a summary key 'exact_w3'"),
    (["--at", "50", "-m", "exact_w2", "--cost", "nfee"], "--cost: no run has a summary key 'nfee' (did you mean 'nfe'?)"),
    (["--at", "-1", "-m", "exact_w2"], "--at: must be positive, got -1.0"),
    (["--at", "50", "-m", "exact_w2", "--by", "steps"], "--at/--tol: not with --by"),
])
def test_cost_errors(tmp_path, args, message):
    r = runner.invoke(app, ["sample", "pflow", "-t", "gaussian", "-n", "20", "--steps", "5", "-q",
                            "-o", str(tmp_path / "a.h5")])
    assert r.exit_code == 0
    r = runner.invoke(app, ["compare", str(tmp_path / "a.h5"), *args])
    assert r.exit_code == 2 and message in r.output, r.output


def test_metric_kinds_match_the_readme():
    """Every metric row of the README's table says the kind the code marks in compare's headers."""
    text = (Path(__file__).parents[1] / "README.md").read_text()
    sec = text[text.index("## Metrics"):text.index("\n## ", text.index("## Metrics") + 4)]
    checked = 0
    for line in sec.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([a-z0-9_<>]+)`", cells[0])
        kinds = [k.strip() for k in cells[2].split(";")]
        kinds = kinds if len(kinds) == len(names) else kinds[:1] * len(names)
        for name, kind in zip(names, kinds):
            name = name.replace("<metric>", "mean_error")
            want = "run" if kind.startswith("exact for the run") else "exact" if kind.startswith("exact") else "MC"
            assert metric_kind(name) == want, (name, kind)
            checked += 1
    assert checked >= 30


def test_compare_table_marks_kinds(tmp_path):
    r = runner.invoke(app, ["sample", "ula", "-t", "gaussian", "-n", "20", "--steps", "5", "-q", "-o",
                            str(tmp_path / "a.h5")])
    assert r.exit_code == 0
    r = runner.invoke(app, ["compare", str(tmp_path / "a.h5")])
    lines = r.output.splitlines()
    head = next(i for i, ln in enumerate(lines) if "exact_w2" in ln)
    row = lines[head + 1]  # the header's second line: the kinds, under their metric names
    col = lines[head].index("exact_w2")
    assert "exact" in row[col - 2:col + 10] and "MC" in row[lines[head].index("mean_error") - 2:]
