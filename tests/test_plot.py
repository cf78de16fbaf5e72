"""difflab plot: every kind renders a valid PNG or PDF of the stated size; what is drawn is exact
(the contoured marginal, the pmf's frequencies and TV); bad input exits 2 and writes nothing."""

import re
import struct

import numpy as np
import pytest
from typer.testing import CliRunner

from difflab.cli.app import app

pytest.importorskip("matplotlib")
from difflab.results.plot import empirical_pmf, figure_size
from difflab.run.io import read_run
from difflab.targets.files import load_target

runner = CliRunner()


def _png_size(path):
    """(width, height) from a PNG's signature and IHDR chunk; fails on anything else."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    assert data[-12:-8] == b"\x00\x00\x00\x00" and data[-8:-4] == b"IEND", f"{path} is truncated"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("plot")
    out = {}
    for name, args in {"mala": ["mala", "--steps", "60"], "gmm50": ["ula", "-t", "gmm50", "--steps", "30"],
                       "one_d": ["ddpm", "-t", "bimodal1d", "--steps", "50"], "disc": ["discrete"],
                       "gibbs": ["gibbs", "--steps", "30"]}.items():
        r = runner.invoke(app, ["sample", *args, "-n", "100", "-q", "-o", str(d / f"{name}.h5")])
        assert r.exit_code == 0, r.output
        out[name] = d / f"{name}.h5"
    for h in (0.02, 0.04, 0.08):
        for seed in (0, 1):
            f = d / f"ula-{h}-{seed}.h5"
            r = runner.invoke(app, ["sample", "ula", "-t", "gaussian", "--init", "target", "-n", "100", "--steps", "200",
                                    "--step-size", str(h), "--seed", str(seed), "-q", "-o", str(f)])
            assert r.exit_code == 0, r.output
    out["sweep"] = sorted(d.glob("ula-0.*.h5"))
    return out


@pytest.mark.parametrize("kind, names, n_panels", [
    ("samples", ["mala", "gmm50", "one_d"], 3), ("trajectories", ["mala", "one_d"], 2),
    ("samples", ["mala", "gmm50", "one_d", "mala"], 4), ("pmf", ["disc", "gibbs"], 2),
])
def test_kinds_render_png_of_the_stated_size(tmp_path, runs, kind, names, n_panels):
    out = tmp_path / f"{kind}.png"
    r = runner.invoke(app, ["plot", *[str(runs[n]) for n in names], "--kind", kind, "-o", str(out), "--dpi", "50"])
    assert r.exit_code == 0, r.output
    w, h = _png_size(out)
    assert (w, h) == figure_size(kind, n_panels, dpi=50)
    assert (w, h) == (round(min(3, n_panels) * 4.5 * 50), round(-(-n_panels // 3) * 4.0 * 50))
    import matplotlib.image

    img = matplotlib.image.imread(out)
    assert img.shape[:2] == (h, w) and img[..., :3].std() > 0.01  # decodes, and is not blank
    assert list(tmp_path.iterdir()) == [out]  # written atomically: no temporary left


def test_metrics_has_a_panel_per_series_and_pdf_works(tmp_path, runs):
    out = tmp_path / "m.pdf"
    r = runner.invoke(app, ["plot", str(runs["mala"]), str(runs["one_d"]), "-k", "metrics",
                            "-m", "mean_error", "-m", "sliced_w2", "-o", str(out)])
    assert r.exit_code == 0, r.output
    data = out.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    box = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    w, h = figure_size("metrics", 2, n_metrics=2, dpi=72)  # PDF points are 1/72 inch
    assert box and (float(box[1]), float(box[2])) == (w, h)


def test_fit_plot_and_default_name(tmp_path, runs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["plot", *map(str, runs["sweep"]), "--by", "step_size", "-m", "exact_w2"])
    assert r.exit_code == 0, r.output
    path = tmp_path / r.stdout.strip()
    assert path.parent.name == "plots" and path.name.endswith("-and-5-more-fit.png")
    assert _png_size(path) == figure_size("fit", 6)


def test_the_contoured_density_is_the_exact_marginal():
    """The first-two-coordinate marginal of the 50-D mixture (what the plots contour) has the
    target's own mean and covariance blocks (moments of a mixture), and its density integrates to 1
    on a grid; any other pair of coordinates too."""
    _, t = load_target("gmm50")
    m = t.marginal([0, 1])
    np.testing.assert_allclose(m.mean, t.mean[:2], atol=1e-12)
    np.testing.assert_allclose(m.cov, t.cov[:2, :2], atol=1e-12)
    other = t.marginal([7, 3])
    np.testing.assert_allclose(other.cov, t.cov[np.ix_([7, 3], [7, 3])], atol=1e-12)
    c, s = m.mean, np.sqrt(np.diag(m.cov)).max()
    g = np.linspace(-8 * s, 8 * s, 401)
    gx, gy = np.meshgrid(g + c[0], g + c[1])
    mass = np.exp(m.log_prob(np.stack([gx.ravel(), gy.ravel()], 1))).sum() * (g[1] - g[0]) ** 2
    assert abs(mass - 1) < 1e-6


def test_pmf_panel_frequencies_give_the_runs_tv(runs):
    """The frequencies drawn are the ones the run's own tv metric was computed from."""
    rec = read_run(runs["disc"], samples=True)
    _, target = load_target("ising6")
    freq, n = empirical_pmf(target, rec.samples)
    assert n == 100 and abs(freq.sum() - 1) < 1e-12
    assert 0.5 * np.abs(freq - target.probs).sum() == pytest.approx(rec.summary["tv"], abs=1e-12)
    # negative control: frequencies of another run's samples do not give this run's tv
    other = read_run(runs["gibbs"], samples=True)
    f2, _ = empirical_pmf(target, other.samples)
    assert abs(0.5 * np.abs(f2 - target.probs).sum() - rec.summary["tv"]) > 1e-6


@pytest.mark.parametrize("args, message", [
    (["--kind", "sample"], "--kind: expected one of samples, trajectories, metrics, pmf, fit, got 'sample' (did you mean"),
    (["-o", "x.jpg"], "--out: 'x.jpg': expected a .png or .pdf file name"),
    (["--kind", "pmf"], "is a run on a continuous target; use --kind samples"),
    (["--kind", "fit", "-m", "mean_error"], "--kind fit: needs --by PARAM and one --metric"),
    (["--by", "step_size"], "--kind fit: needs exactly one --metric"),
    (["-k", "metrics", "-m", "mean_eror"], "--metric: no run has a metric series 'mean_eror' (did you mean 'mean_error'?)"),
    (["--dpi", "0"], "--dpi: expected 10 to 1200, got 0"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, runs, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["plot", str(runs["mala"]), *args])
    assert r.exit_code == 2 and message in r.output, r.output
    assert list(tmp_path.iterdir()) == []


def test_missing_or_unreadable_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["plot", "nope.h5"])
    assert r.exit_code == 2 and "nope.h5: no such run file" in r.output
    (tmp_path / "bad.h5").write_text("not hdf5")
    r = runner.invoke(app, ["plot", "bad.h5"])
    assert r.exit_code == 2 and "bad.h5: not a readable difflab run file" in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5"]


def test_a_diverged_run_plots(tmp_path):
    """ULA at step size 5 on a Gaussian diverges (metrics up to ~1e145, then inf): every kind of
    figure is drawn (values beyond 1e100 left out of the metric panels; matplotlib's tick locator
    raised OverflowError on them), and the run's warning states the SE ratio in e-notation rather
    than as a 150-digit integer."""
    import json

    import difflab
    from difflab.results import plot

    run = difflab.sample("ula", "gaussian", particles=100, steps=200, step_size=5.0, out=tmp_path / "div.h5")
    assert run.attrs["status"] in ("diverged", "complete")
    assert max(abs(v) for v in run.metrics["mean_error"]) > plot.PLOTTED_MAX  # the case is what it says
    for kind in ("metrics", "samples", "trajectories"):
        out = plot.render([tmp_path / "div.h5"], kind, tmp_path / f"{kind}.png")
        assert out.stat().st_size > 1000
    said = " ".join(json.loads(run.attrs["warnings"]))
    assert " SE)" in said and not any(len(w) > 40 and w.isdigit() for w in said.replace("(", " ").split())
