"""compare --by PARAM --metric M --fit: grouping over seeds and log-log slope fits."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from difflab.cli.app import app
from difflab.results.analysis import fit_slope

runner = CliRunner()


def _points(xs, ys):
    return [{"value": x, "n": 1, "mean": y, "sd": None} for x, y in zip(xs, ys)]


def test_slope_of_an_exact_power_law():
    h = [0.01, 0.02, 0.04, 0.08]
    f = fit_slope(_points(h, [3.0 * x**2 for x in h]))
    assert f["k"] == 4 and abs(f["slope"] - 2.0) < 1e-12 and f["ci_high"] - f["ci_low"] < 1e-9


def test_two_points_give_a_slope_without_interval_and_nonpositive_values_are_left_out():
    f = fit_slope(_points([1, 2, 4], [0.0, 0.5, 0.25]))
    assert f["k"] == 2 and abs(f["slope"] + 1.0) < 1e-12 and f["ci_low"] is None
    assert fit_slope(_points([1, 2], [0.0, 1.0]))["slope"] is None


def test_confidence_interval_covers_the_true_order_at_its_level():
    """400 synthetic sweeps y = 0.3 h^1.5 exp(0.1 eps) on 6 step sizes: the 95% interval must
    cover 1.5 in a fraction within 4 binomial standard errors of 0.95 (sd = sqrt(0.95 0.05 / 400)
    = 0.011, so [0.906, 0.994]); negative control: it covers a wrong order 1.0 in < 5% of them."""
    rng = np.random.default_rng(0)
    h = np.geomspace(0.01, 0.32, 6)
    hits = wrong = 0
    for _ in range(400):
        f = fit_slope(_points(h, 0.3 * h**1.5 * np.exp(0.1 * rng.standard_normal(6))))
        hits += f["ci_low"] <= 1.5 <= f["ci_high"]
        wrong += f["ci_low"] <= 1.0 <= f["ci_high"]
    assert 0.906 <= hits / 400 <= 0.994 and wrong / 400 < 0.05


def _sweep(tmp_path, sampler, key, values, extra=(), seeds=(0,)):
    for v in values:
        for s in seeds:
            out = tmp_path / f"{sampler}-{v}-{s}-{'-'.join(extra)}.h5"
            r = runner.invoke(app, ["sample", sampler, "-t", "gaussian", "-n", "50", key, str(v), "--seed", str(s),
                                    *extra, "-q", "-o", str(out)])
            assert r.exit_code == 0, r.output


def test_ula_sweep_recovers_the_first_order_bias(tmp_path):
    """ULA on a Gaussian from exact draws: exact_w2 of its law is O(h) (stationary covariance
    S (I - h S^-1 / 2)^-1): fitted slope within [0.95, 1.05] with the interval inside it; two seeds
    per step size aggregate to one point with spread 0 (an exact metric)."""
    _sweep(tmp_path, "ula", "--step-size", [0.01, 0.02, 0.04, 0.08], ("--init", "target", "--steps", "400"),
           seeds=(0, 1))
    r = runner.invoke(app, ["compare", *map(str, tmp_path.glob("*.h5")), "--by", "step_size", "--metric", "exact_w2",
                            "--fit", "--json"])
    assert r.exit_code == 0, r.output
    (g,) = json.loads(r.output)
    assert [p["n"] for p in g["points"]] == [2, 2, 2, 2] and all(p["sd"] == 0 for p in g["points"])
    assert 0.95 < g["fit"]["ci_low"] <= g["fit"]["slope"] <= g["fit"]["ci_high"] < 1.05, g["fit"]


def test_solver_orders_split_into_series(tmp_path):
    """pflow euler and heun swept over steps form two series; exact_w2 against steps has slope
    about -1 (euler) and -2 (heun)."""
    for solver in ("euler", "heun"):
        _sweep(tmp_path, "pflow", "--steps", [20, 40, 80], ("--solver", solver))
    r = runner.invoke(app, ["compare", *map(str, tmp_path.glob("*.h5")), "--by", "steps", "-m", "exact_w2", "--fit",
                            "--json"])
    assert r.exit_code == 0, r.output
    slopes = {g["series"]["solver"]: g["fit"]["slope"] for g in json.loads(r.output)}
    assert -1.2 < slopes["euler"] < -0.8 and -2.3 < slopes["heun"] < -1.7, slopes
    r = runner.invoke(app, ["compare", *map(str, tmp_path.glob("*.h5")), "--by", "steps", "-m", "exact_w2", "--fit"])
    assert r.exit_code == 0 and "log-log slope of exact_w2 against steps" in r.output


@pytest.mark.parametrize("args, message", [
    (["--by", "step_sise", "-m", "exact_w2"], "--by: no run has a parameter 'step_sise' (did you mean 'step_size'?)"),
    (["--by", "step_size", "-m", "exact_w3"], "--metric: no run has a summary key 'exact_w3'"),
    (["--by", "step_size"], "--by: needs exactly one --metric"),
    (["--fit", "-m", "exact_w2"], "--fit: needs --by PARAM"),
])
def test_by_errors(tmp_path, args, message):
    _sweep(tmp_path, "ula", "--step-size", [0.05], ("--steps", "10"))
    r = runner.invoke(app, ["compare", *map(str, tmp_path.glob("*.h5")), *args])
    assert r.exit_code == 2 and message in r.output, r.output
