"""kind: student_t, the multivariate Student-t: its log density against scipy's, its score against
finite differences, its exact draws against the F law of their Mahalanobis distance, its marginals,
its file errors, and the whole tool (sample, compare, plot, export, sweep, the Python API) on it."""

import json

import h5py
import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

import difflab
from difflab.cli.app import app
from difflab.errors import ConfigError
from difflab.targets import parse_target
from difflab.targets.student_t import StudentT

runner = CliRunner()
LOC = np.array([1.0, -2.0, 0.5])
SCALE = np.array([[2.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 0.5]])


@pytest.mark.parametrize("nu", [2.5, 5.0, 40.0])
def test_log_density_is_scipys(nu):
    t = StudentT(nu, LOC, SCALE)
    x = np.random.default_rng(0).standard_normal((200, 3)) * 4 + LOC  # the tails too
    want = stats.multivariate_t(LOC, SCALE, df=nu).logpdf(x)
    np.testing.assert_allclose(t.log_prob(x), want, rtol=1e-12, atol=1e-12)
    assert t.log_prob(x[0]) == pytest.approx(want[0], rel=1e-12)  # one point (d,)


def test_score_is_the_gradient_of_the_log_density():
    """Central differences, step 1e-5: error O(h^2 |d^3 log p|) + round-off O(eps / h), below 1e-7."""
    t = StudentT(4.0, LOC, SCALE)
    x = np.random.default_rng(1).standard_normal((50, 3)) * 3 + LOC
    h, fd = 1e-5, np.empty_like(x)
    for j in range(3):
        e = np.zeros(3)
        e[j] = h
        fd[:, j] = (t.log_prob(x + e) - t.log_prob(x - e)) / (2 * h)
    np.testing.assert_allclose(t.score(x), fd, rtol=0, atol=1e-7)
    lp, s = t.log_prob_and_score_t(np.ascontiguousarray(x.T))
    np.testing.assert_array_equal(lp, t.log_prob(x))
    np.testing.assert_array_equal(s.T, t.score(x))


def _mahalanobis_over_d(t, x):
    w = np.linalg.solve(np.linalg.cholesky(t.scale), (x - t.loc).T)
    return (w * w).sum(axis=0) / t.dim


def test_exact_draws_have_the_F_law_and_the_mean():
    """q(X) / d ~ F(d, nu) exactly for X ~ t_nu(loc, scale): a KS test on n = 20,000 draws at
    level 1e-3 (the false-failure rate), and a negative control: draws with nu + 3 are rejected at
    the same level. The sample mean within 4 standard errors, sqrt(diag(cov) / n), of loc."""
    nu, n = 5.0, 20_000
    t = StudentT(nu, LOC, SCALE)
    x = t.sample(np.random.default_rng(2), n)
    assert x.shape == (n, 3)
    assert stats.kstest(_mahalanobis_over_d(t, x), stats.f(3, nu).cdf).pvalue > 1e-3
    wrong = StudentT(nu + 3, LOC, SCALE).sample(np.random.default_rng(3), n)
    assert stats.kstest(_mahalanobis_over_d(t, wrong), stats.f(3, nu).cdf).pvalue < 1e-3
    assert np.all(np.abs(x.mean(0) - LOC) < 4 * np.sqrt(np.diag(t.cov) / n))
    np.testing.assert_allclose(t.cov, nu / (nu - 2) * SCALE, rtol=1e-15)
    np.testing.assert_array_equal(t.mean, LOC)


def test_marginals_are_students_t_of_the_sub_scale():
    t = StudentT(6.0, LOC, SCALE)
    m = t.marginal([2, 0])
    x = np.random.default_rng(4).standard_normal((40, 2))
    want = stats.multivariate_t(LOC[[2, 0]], SCALE[np.ix_([2, 0], [2, 0])], df=6.0).logpdf(x)
    np.testing.assert_allclose(m.log_prob(x), want, rtol=1e-12)


BAD = [
    ("kind: student_t\nnu: 2\nloc: [0, 0]\nscale: 1\n", "nu: must be > 2"),
    ("kind: student_t\nnu: 5\nloc: [0, 0]\nscale: [[1, 2], [2, 1]]\n", "scale: must be positive definite"),
    ("kind: student_t\nnu: 5\nscale: 1\n", "loc: missing required key"),
    ("kind: student_t\nnu: 5\nloc: [0, 0]\nscale: [1, 2, 3]\n", "scale: expected 2 diagonal entries"),
    ("kind: student_t\nnu: 5\nloc: [0, 0]\nscale: 1\ndf: 3\n", "df: unknown key"),
    ("kind: student_t\nnu: yes\nloc: [0]\nscale: 1\n", "nu: expected a number"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_bad_files_name_the_key(text, message):
    with pytest.raises(ConfigError, match=f"^t.yaml: {message}"):
        parse_target(text, "t.yaml", "t")


def test_the_file_builds_the_target_and_the_shipped_one_loads():
    spec = parse_target("kind: student_t\nnu: 7\nloc: [0, 1]\nscale: [1, 2]\n", "t.yaml", "t")
    t = difflab.load_target(spec.text)
    assert (t.nu, t.dim) == (7.0, 2) and np.array_equal(t.scale, np.diag([1.0, 2.0]))
    shipped = difflab.load_target("student_t")
    assert shipped.kind == "student_t" and shipped.components is None and not shipped.has_noised_law


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("st")
    out = {}
    for name, args in {"mala": ["mala"], "ula": ["ula", "--step-size", "0.05"], "uld": ["uld"]}.items():
        r = runner.invoke(app, ["sample", *args, "-t", "student_t", "-n", "100", "--steps", "50", "-q",
                                "-o", str(d / f"{name}.h5")])
        assert r.exit_code == 0, r.output
        out[name] = d / f"{name}.h5"
    return out


def test_mala_ula_uld_run_on_it_and_compare_plot_export_read_them(runs, tmp_path):
    with h5py.File(runs["mala"]) as f:
        assert f.attrs["status"] == "complete" and "floor_mean_error" in f["summary"].attrs
        assert "mode_tv" not in f["summary"].attrs  # no components to occupy
    r = runner.invoke(app, ["compare", *map(str, runs.values()), "--json"])
    assert r.exit_code == 0, r.output
    assert {row["sampler"] for row in json.loads(r.stdout)} == {"mala", "ula", "uld"}
    for kind in ("samples", "trajectories", "metrics"):
        png = tmp_path / f"{kind}.png"
        r = runner.invoke(app, ["plot", *map(str, runs.values()), "--kind", kind, "-o", str(png), "--dpi", "40"])
        assert r.exit_code == 0 and png.stat().st_size > 0, r.output
    nc = tmp_path / "mala.nc"
    r = runner.invoke(app, ["export", str(runs["mala"]), "-o", str(nc)])
    assert r.exit_code == 0 and nc.exists(), r.output


def test_diffusion_samplers_are_refused_in_one_line(tmp_path):
    r = runner.invoke(app, ["sample", "ddpm", "-t", "student_t", "-o", str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "needs a target with a closed-form noised law" in r.output
    assert not (tmp_path / "x.h5").exists()


def test_sweep_and_the_python_api(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text("sampler: mala\nset: {target: student_t, particles: 100, steps: 20}\n"
                                     "grid: {step_size: [0.05, 0.1]}\n")
    r = runner.invoke(app, ["sweep", "s.yaml"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "runs").glob("mala-student_t-*.h5"))) == 2
    run = difflab.sample("mala", target=difflab.load_target("student_t"), particles=100, steps=20)
    assert run.status == "complete" and run.samples.shape == (100, 2)
