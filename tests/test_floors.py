"""Monte Carlo floors with standard errors, the 'far above its floor' mark and warning, and the
readable labels of run files, plot legends and the sweep display.

Statistical tolerances: a mean of R independent values is checked to 4 of its standard errors
(sd / sqrt(R), false-failure rate 6e-5 per check); a standard deviation of R values to 4 of its own
(about sd sqrt((kurtosis - 1) / (4 R)), here below 0.1 sd for R = 3,000)."""

import json
import math
import re

import h5py
import numpy as np
import pytest
from scipy import special
from typer.testing import CliRunner

import difflab
from difflab.cli.app import app
from difflab.maths import metrics
from difflab.results import analysis
from difflab.run import checks, floors

runner = CliRunner()


def _chi_moments(d: int, scale: float):
    """Mean and sd of scale * chi_d: E chi_d = sqrt(2) Gamma((d+1)/2) / Gamma(d/2), E chi_d^2 = d."""
    mean = scale * math.sqrt(2.0) * math.exp(special.gammaln((d + 1) / 2) - special.gammaln(d / 2))
    return mean, math.sqrt(scale**2 * d - mean**2)


@pytest.mark.parametrize("d", [1, 3])
def test_floor_and_its_standard_error_match_the_chi_law_of_mean_error(d):
    """For n exact draws of N(0, s^2 I_d), mean_error = |xbar| = (s / sqrt n) chi_d: the floor is
    its mean and floor_se its standard deviation (R = 3,000 sets of n = 40)."""
    s, n, R = 1.5, 40, 3000
    mean, sd = _chi_moments(d, s / math.sqrt(n))

    def final(x):
        return {"mean_error": metrics.mean_error(x, np.zeros(d))}

    def sample(rng, k):
        return s * rng.standard_normal((k, d))

    out = metrics.floor_stats(final, sample, np.random.default_rng(d), n, draws=R)
    assert abs(out["floor_mean_error"] - mean) < 4 * sd / math.sqrt(R), (out, mean)
    assert abs(out["floor_se_mean_error"] - sd) < 0.1 * sd, (out, sd)
    # negative control: a sample off by 2 s in the first coordinate (8 sd of xbar) is seen, by many
    # standard errors
    shifted = final(sample(np.random.default_rng(99), n) + np.eye(d)[0] * 2 * s)
    summary = {**shifted, **out, "floor_draws": R}
    assert checks.above_floor(summary, "mean_error") > 10


def test_above_floor_is_the_standardised_excess():
    summary = {"sliced_w2": 0.5, "floor_sliced_w2": 0.1, "floor_se_sliced_w2": 0.02, "floor_draws": 16}
    assert checks.above_floor(summary, "sliced_w2") == pytest.approx(0.4 / (0.02 * math.sqrt(1 + 1 / 16)))
    tilted = {"tilted_energy": 0.3, "tilted_floor_energy": 0.0, "tilted_floor_se_energy": 0.01, "floor_draws": 16}
    assert checks.above_floor(tilted, "tilted_energy") == pytest.approx(0.3 / (0.01 * math.sqrt(17 / 16)))
    # no standard error (a file from before floors had one), a zero or infinite one: no verdict
    assert checks.above_floor({"sliced_w2": 0.5, "floor_sliced_w2": 0.1}, "sliced_w2") is None
    assert checks.above_floor({**summary, "floor_se_sliced_w2": 0.0}, "sliced_w2") is None
    assert checks.above_floor({**summary, "sliced_w2": float("inf")}, "sliced_w2") is None
    assert checks.far_above_floor(summary) == [("sliced_w2", checks.above_floor(summary, "sliced_w2"))]
    assert checks.far_above_floor({**summary, "sliced_w2": 0.15}) == []
    # the hint follows the run's options; a wrong score is named as such (steps cannot remove it)
    line, = checks.floor_warning(summary, {"steps": 100, "step_size": 0.1})
    assert "sliced_w2 0.5 against 0.1 ± 0.02 (19 SE)" in line and "a smaller --step-size" in line
    assert "score is not exact" not in line
    line, = checks.floor_warning({**summary, "score_mse": 1.5}, {"steps": 100})
    assert "try more --steps (the score is not exact, score_mse 1.5" in line


def test_runs_record_floors_with_standard_errors_for_every_final_metric():
    run = difflab.sample("mala", "bimodal1d", particles=300, steps=50, seed=1)
    s = run.summary
    finals = ["mean_error", "cov_rel_error", "w2_gaussian", "sliced_w2", "mode_tv", "mmd2", "energy",
              "w2_empirical", "ksd2"]
    assert s["floor_draws"] == floors.DRAWS == 100  # a cached entry; a law built in Python: FLOOR_DRAWS
    assert metrics.FLOOR_DRAWS == 16
    for m in finals:
        assert np.isfinite(s[f"floor_{m}"]) and s[f"floor_se_{m}"] > 0, m
    again = difflab.sample("mala", "bimodal1d", particles=300, steps=50, seed=1)
    assert again.summary == s  # the floors have their own seeded stream: bit-identical


@pytest.mark.slow  # statistical: a biased and an exact run at the default size, judged against their floors
def test_a_biased_run_is_marked_and_an_exact_one_is_not():
    """ULA with h = 0.3 on bimodal1d has a visible bias (its mode weights and spreads are wrong):
    mode_tv and energy lie tens of standard errors above their floors. MALA started at the target
    is exact at every step (the chains stay at stationarity): no metric is marked (negative control;
    on exact draws about 2 % of runs get a mark, see checks.FLOOR_SE_MARK; seed fixed)."""
    biased = difflab.sample("ula", "bimodal1d", step_size=0.3, seed=0)
    far = dict(checks.far_above_floor(biased.summary))
    assert far.get("mode_tv", 0) > 10 and far.get("energy", 0) > 10, far
    lines = checks.run_warnings(biased.summary, biased.params, biased.status)
    assert any(line.startswith("warning: energy") and "smaller --step-size" in line for line in lines), lines
    exact = difflab.sample("mala", "bimodal1d", init="target", seed=0)
    assert checks.far_above_floor(exact.summary) == [], exact.summary
    assert checks.floor_warning(exact.summary, exact.params) == []


def test_the_warning_is_printed_stored_and_shown(tmp_path):
    out = tmp_path / "u.h5"
    r = runner.invoke(app, ["sample", "ula", "-t", "bimodal1d", "--step-size", "0.3", "-n", "500", "-o", str(out)])
    assert r.exit_code == 0, r.output
    warned = [ln for ln in r.stderr.splitlines() if "above the exact-draw floor" in ln]
    assert len(warned) == 1 and warned[0].startswith("warning: ")
    assert "*" in r.stdout and "standard errors above the floor" in r.stdout  # the summary table marks it
    with h5py.File(out) as f:
        stored = json.loads(f.attrs["warnings"])
    assert warned[0] in stored
    shown = runner.invoke(app, ["show", str(out)])
    assert shown.exit_code == 0 and warned[0] in shown.stderr
    as_json = json.loads(runner.invoke(app, ["show", str(out), "--json"]).stdout)
    assert as_json["warnings"] == stored
    table = runner.invoke(app, ["compare", str(out), "-m", "mode_tv", "-m", "ksd2"])
    assert re.search(r"\d\* │", table.stdout) and "standard errors above its exact-draw floor" in table.stdout


# ---------------------------------------------------------------- labels


def _name(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["sample", *args, "-q", "--if-exists", "overwrite"])
    assert r.exit_code == 0, r.output
    return r.stdout.strip().splitlines()[-1]


def test_run_file_names_carry_a_label_of_the_non_default_parameters(tmp_path, monkeypatch):
    small = ["-n", "20", "--steps", "5"]
    base = _name(["ula", "-t", "gaussian", *small], tmp_path, monkeypatch)
    assert re.fullmatch(r"runs/ula-gaussian-particles=20,steps=5-[0-9a-f]{10}\.h5", base), base
    one = _name(["ula", "-t", "gaussian", *small, "--step-size", "0.2", "--seed", "1"], tmp_path, monkeypatch)
    assert re.fullmatch(r"runs/ula-gaussian-particles=20,steps=5,step_size=0.2,seed=1-[0-9a-f]{10}\.h5", one), one
    # output options are not part of the label; a default value given explicitly is not either
    same = _name(["ula", "-t", "gaussian", *small, "--save-every", "2", "--step-size", "0.01"], tmp_path, monkeypatch)
    assert re.fullmatch(r"runs/ula-gaussian-particles=20,steps=5-[0-9a-f]{10}\.h5", same), same
    # an alias spelling is the same run, the same name; target overrides in any order, the same name
    a = _name(["ddpm", "-t", "gaussian", *small, "--schedule", "linear"], tmp_path, monkeypatch)
    assert a == _name(["ddpm", "-t", "gaussian", *small], tmp_path, monkeypatch)
    b = _name(["ula", *small, "--target-set", "ring.radius=3", "--target-set", "ring.std=0.5"], tmp_path, monkeypatch)
    c = _name(["ula", *small, "--target-set", "ring.std=0.5", "--target-set", "ring.radius=3"], tmp_path, monkeypatch)
    assert b == c and "target.ring.radius=3,target.ring.std=0.5-" in b


def test_a_long_label_is_cut_at_a_parameter_and_unsafe_characters_replaced():
    from difflab.run.sampling import LABEL_MAX, SampleOptions, resolve_params, run_label

    opts = SampleOptions(sampler="ksampler", particles=20, steps=7, seed=5,
                         options={"solver": "heun", "grid": "uniform", "s_churn": 0.5, "s_noise": 1.003, "shift": 3.0})
    label = run_label(opts, resolve_params(opts))
    assert len(label) <= LABEL_MAX and label.endswith(",+") and label.startswith("particles=20,steps=7,solver=heun")
    opts = SampleOptions(sampler="pflow", options={"likelihood": True, "points": "d/p q.npy"})
    label = run_label(opts, resolve_params(opts))
    assert "points=d_p_q.npy" in label and "/" not in label and " " not in label


def test_labels_name_what_differs_among_the_runs():
    rows = [{"run": f"runs/r{i}.h5", "sampler": "ula", "target": "gmm", "seed": s,
             "params": {"step_size": h, "steps": 100, "save_every": e}, "summary": {}}
            for i, (h, s, e) in enumerate([(0.1, 0, 1), (0.2, 0, 2), (0.2, 1, 1)])]
    assert analysis.labels(rows) == ["seed=0, step_size=0.1", "seed=0, step_size=0.2", "seed=1, step_size=0.2"]
    assert analysis.labels(rows[:1]) == ["r0"]  # nothing differs: the file name
    other = {"run": "runs/d.h5", "sampler": "ddpm", "target": "gmm", "seed": 0,
             "params": {"steps": 100, "eta": 0.5}, "summary": {}}
    assert analysis.labels([rows[0], other]) == ["sampler=ula", "sampler=ddpm"]  # not eta=-, step_size=-
    assert analysis.labels([*rows[:1], {"run": "x/bad.h5", "error": "unreadable"}]) == ["r0", "bad"]


def test_the_sweep_display_names_each_run_by_its_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text("sampler: ula\nset: {target: gaussian, particles: 20, steps: 5}\n"
                                     "grid: {step_size: [0.05, 0.1]}\n")
    r = runner.invoke(app, ["sweep", "s.yaml"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stderr.splitlines() if "complete" in ln]
    assert len(lines) == 2 and all(re.search(r"complete  step_size=0\.(05|1)  runs/ula-gaussian-", ln) for ln in lines)


def test_plot_legends_use_the_labels(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from difflab.results import plot

    monkeypatch.chdir(tmp_path)
    seen = {}
    real = plot._metric_panel

    def spy(ax, records, name, *rest):
        real(ax, records, name, *rest)
        seen[name] = [t.get_text() for t in ax.get_legend().get_texts()]
    monkeypatch.setattr(plot, "_metric_panel", spy)
    files = [_name(["ula", "-t", "gaussian", "-n", "20", "--steps", "10", "--step-size", h], tmp_path, monkeypatch)
             for h in ("0.05", "0.1")]
    r = runner.invoke(app, ["plot", *files, "--kind", "metrics", "-o", "m.png"])
    assert r.exit_code == 0, r.output
    assert seen and all(v == ["step_size=0.05", "step_size=0.1"] for v in seen.values()), seen
