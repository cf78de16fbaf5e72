"""difflab export --to netcdf: the ArviZ InferenceData layout holds the run exactly, opens in ArviZ,
and ArviZ's own split R-hat and ESS on it agree with the run's (an independent implementation)."""

import numpy as np
import pytest
from typer.testing import CliRunner

from difflab.cli.app import app
from difflab.run.io import read_run

h5netcdf = pytest.importorskip("h5netcdf")
runner = CliRunner()


@pytest.fixture(scope="module")
def mala_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    # 198 steps: a frame every step, 199 frames; the run's R-hat/ESS use the last 100 (an even count)
    r = runner.invoke(app, ["sample", "mala", "-n", "300", "--steps", "198", "--trajectory-particles", "40",
                            "-q", "-o", str(d / "m.h5")])
    assert r.exit_code == 0, r.output
    return d / "m.h5"


def test_layout_holds_the_run_exactly(mala_run, tmp_path):
    out = tmp_path / "m.nc"
    r = runner.invoke(app, ["export", str(mala_run), "--to", "netcdf", "-o", str(out)])
    assert r.exit_code == 0, r.output
    rec = read_run(mala_run, samples=True, series=True, trajectory=True)
    with h5netcdf.File(out, "r") as f:
        post = f["posterior"]
        assert post["x"].dimensions == ("chain", "draw", "x_dim_0") and post["x"].shape == (40, 199, 2)
        np.testing.assert_array_equal(post["x"][...], rec.trajectory.transpose(1, 0, 2))
        np.testing.assert_array_equal(post["draw"][...], rec.trajectory_step)
        acc = f["sample_stats"]["acceptance_rate"][...]
        assert np.isnan(acc[:, 0]).all()  # step 0: the initial state, no step taken
        np.testing.assert_array_equal(acc[0, 1:], rec.per_step["acceptance_rate"][rec.trajectory_step[1:] - 1])
        np.testing.assert_array_equal(f["difflab_samples"]["x"][...], rec.samples)
        np.testing.assert_array_equal(f["difflab_metrics"]["mean_error"][...], rec.metrics["mean_error"])
        assert f.attrs["sampler"] == "mala" and f.attrs["inference_library"] == "difflab"
        assert "ring" in f.attrs["target_yaml"]


def test_opens_in_arviz_with_the_runs_diagnostics(mala_run, tmp_path):
    """ArviZ's split R-hat and mean-ESS (Geyer's initial monotone sequence on split chains) on the
    exported draws' second half equal the run's own per-coordinate values (/summary ess, split_rhat).
    Negative control: on all draws (the burn-in included) they differ."""
    az = pytest.importorskip("arviz")
    import h5py

    out = tmp_path / "m.nc"
    assert runner.invoke(app, ["export", str(mala_run), "-o", str(out)]).exit_code == 0
    idata = az.from_netcdf(out)
    assert dict(idata.posterior.sizes) == {"chain": 40, "draw": 199, "x_dim_0": 2}
    kept = idata.posterior.isel(draw=slice(99, None))
    rhat = az.rhat(kept, method="split")["x"].values
    ess = az.ess(kept, method="mean")["x"].values
    with h5py.File(mala_run, "r") as f:
        ours_rhat, ours_ess = f["summary/split_rhat"][()], f["summary/ess"][()]
    np.testing.assert_allclose(rhat, ours_rhat, rtol=1e-10)
    np.testing.assert_allclose(ess, ours_ess, rtol=1e-10)
    all_rhat = az.rhat(idata.posterior, method="split")["x"].values
    assert not np.allclose(all_rhat, ours_rhat, rtol=1e-3)


def test_refuses_to_overwrite_and_bad_format(mala_run, tmp_path):
    out = tmp_path / "m.nc"
    assert runner.invoke(app, ["export", str(mala_run), "-o", str(out)]).exit_code == 0
    stamp = out.stat().st_mtime_ns
    r = runner.invoke(app, ["export", str(mala_run), "-o", str(out)])
    assert r.exit_code == 2 and "the file exists; pass --force" in r.output
    assert out.stat().st_mtime_ns == stamp
    assert runner.invoke(app, ["export", str(mala_run), "-o", str(out), "--force"]).exit_code == 0
    r = runner.invoke(app, ["export", str(mala_run), "--to", "zarr", "-o", str(tmp_path / "z.nc")])
    assert r.exit_code == 2 and "--to: expected one of netcdf, got 'zarr'" in r.output
    r = runner.invoke(app, ["export", str(tmp_path / "none.h5")])
    assert r.exit_code == 2 and "no such run file" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nc"]


def test_default_export_goes_to_exports_not_beside_the_run(mala_run, tmp_path, monkeypatch):
    """Without -o the netCDF goes to ./exports/<run name>.nc; the run's folder keeps run files only."""
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in mala_run.parent.iterdir())
    r = runner.invoke(app, ["export", str(mala_run)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "exports" / mala_run.with_suffix(".nc").name).is_file()
    assert sorted(p.name for p in mala_run.parent.iterdir()) == before
