"""Run files (schema 2) and exports are netCDF-4 inside HDF5: xarray opens them as labelled arrays
equal to what difflab reads; every dataset has a description and units; schema 1 files still read."""

import json

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from difflab.cli.app import app
from difflab.run.io import SCHEMA_VERSION, read_run

xr = pytest.importorskip("xarray")
pytest.importorskip("h5netcdf")
runner = CliRunner()


def _sample(path, *args):
    r = runner.invoke(app, ["sample", *args, "-q", "-o", str(path)])
    assert r.exit_code == 0, r.output
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("xr")
    return {
        "mala": _sample(d / "mala.h5", "mala", "-n", "60", "--steps", "40", "--trajectory-particles", "7"),
        "pflow": _sample(d / "pflow.h5", "pflow", "-t", "gaussian", "-n", "50", "--steps", "10", "--likelihood",
                         "--likelihood-points", "9"),
        "discrete": _sample(d / "discrete.h5", "discrete", "-t", "xor3", "-n", "40", "--steps", "20"),
    }


def _datasets(f):
    out = []
    f.visititems(lambda name, obj: out.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.mark.parametrize("name", ["mala", "pflow", "discrete"])
def test_every_dataset_is_described_and_every_axis_is_a_dimension_scale(runs, name):
    with h5py.File(runs[name]) as f:
        assert f.attrs["schema_version"] == SCHEMA_VERSION == 2
        for path, ds in _datasets(f):
            assert ds.attrs.get("description") and ds.attrs.get("units") == "1", path
            for axis in range(ds.ndim):
                assert len(ds.dims[axis]) == 1 or ds.is_scale, (path, axis)  # attached to its scale
    # negative control: a plain h5py dataset has neither
    with h5py.File(runs[name].with_suffix(".plain"), "w") as f:
        ds = f.create_dataset("x", data=np.zeros((2, 3)))
        assert "description" not in ds.attrs and len(ds.dims[0]) == 0


def test_xarray_opens_a_run_as_labelled_arrays_equal_to_difflabs_reading(runs):
    rec = read_run(runs["mala"], everything=True)
    tree = xr.open_datatree(runs["mala"], engine="h5netcdf")
    samples = tree["samples"]
    assert samples.dims == ("particle", "coordinate") and samples.shape == (60, 2)
    np.testing.assert_array_equal(samples.values, rec.samples)
    np.testing.assert_array_equal(samples["particle"].values, np.arange(60))
    pos = tree["trajectory/positions"]
    assert pos.dims == ("step", "trajectory_particle", "coordinate") and pos.shape == (41, 7, 2)
    np.testing.assert_array_equal(pos["step"].values, rec.trajectory_step)
    np.testing.assert_array_equal(pos.sel(step=40).values, rec.trajectory[-1])
    metrics = tree["metrics"].to_dataset()
    np.testing.assert_array_equal(metrics["step"].values, rec.metrics["step"])
    np.testing.assert_array_equal(metrics["sliced_w2"].values, rec.metrics["sliced_w2"])
    per_step = tree["per_step"].to_dataset()
    assert per_step["acceptance_rate"].dims == ("step",)
    np.testing.assert_array_equal(per_step["step"].values, np.arange(1, 41))
    np.testing.assert_array_equal(per_step["acceptance_rate"].values, rec.per_step["acceptance_rate"])
    summary = tree["summary"]
    assert summary["r_hat"].dims == ("coordinate",)
    np.testing.assert_array_equal(summary["r_hat"].values, rec.summary_arrays["r_hat"])
    assert summary.attrs["sliced_w2"] == rec.summary["sliced_w2"]
    assert json.loads(tree.attrs["warnings"]) == json.loads(rec.attrs["warnings"])
    assert tree["config"].attrs["params_json"] == json.dumps(rec.params, sort_keys=True)


def test_likelihood_and_discrete_groups_open_too(runs):
    rec = read_run(runs["pflow"], everything=True)
    tree = xr.open_datatree(runs["pflow"], engine="h5netcdf")
    lik = tree["likelihood"]
    assert lik["points"].dims == ("point", "coordinate") and lik["loglik_ode"].dims == ("point",)
    np.testing.assert_array_equal(lik["loglik_ode"].values, rec.groups["likelihood"]["loglik_ode"])
    assert set(rec.groups["likelihood"]) == {"points", "loglik_ode", "loglik_prior", "exact_log_p_delta",
                                             "exact_log_p0"}  # the index scale is not a result
    disc = xr.open_datatree(runs["discrete"], engine="h5netcdf")
    np.testing.assert_array_equal(disc["samples"].values, read_run(runs["discrete"], samples=True).samples)


def test_the_export_opens_in_xarray_with_its_dimensions(runs, tmp_path):
    out = tmp_path / "m.nc"
    assert runner.invoke(app, ["export", str(runs["mala"]), "-o", str(out)]).exit_code == 0
    tree = xr.open_datatree(out, engine="h5netcdf")
    assert tree["posterior/x"].dims == ("chain", "draw", "x_dim_0") and tree["posterior/x"].shape == (7, 41, 2)
    assert tree["difflab_samples/x"].dims == ("particle", "x_dim_0")
    with h5py.File(out) as f:
        assert all(ds.attrs.get("description") for _, ds in _datasets(f))


def _write_schema_1(path, rec) -> None:
    """A run file as difflab wrote schema 1: no dimension scales, per-step values under /metrics."""
    with h5py.File(path, "w") as f:
        for k, v in rec.attrs.items():
            f.attrs[k] = v
        f.attrs["schema_version"] = 1
        f.create_dataset("samples", data=rec.samples)
        cfg = f.create_group("config")
        cfg.attrs.update(target_yaml=rec.target_yaml, target_source=rec.target_source,
                         params_json=json.dumps(rec.params))
        cfg.create_group("params")
        f.create_dataset("trajectory/positions", data=rec.trajectory)
        f.create_dataset("trajectory/step", data=rec.trajectory_step)
        f.create_dataset("metrics/step", data=rec.metrics["step"])
        f.create_dataset("metrics/sliced_w2", data=rec.metrics["sliced_w2"])
        f.create_dataset("metrics/per_step/step", data=rec.per_step["step"])
        f.create_dataset("metrics/per_step/acceptance_rate", data=rec.per_step["acceptance_rate"])
        f.create_group("summary").attrs.update({k: v for k, v in rec.summary.items() if k.startswith("sliced")})


def test_schema_1_files_are_still_read(runs, tmp_path):
    rec = read_run(runs["mala"], everything=True)
    old = tmp_path / "old.h5"
    _write_schema_1(old, rec)
    back = read_run(old, everything=True)
    np.testing.assert_array_equal(back.samples, rec.samples)
    np.testing.assert_array_equal(back.per_step["acceptance_rate"], rec.per_step["acceptance_rate"])
    assert back.groups == {} and set(back.metrics) == {"step", "sliced_w2"}
    for args in (["show", str(old)], ["compare", str(old)], ["export", str(old), "-o", str(tmp_path / "o.nc")]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, (args, r.output)
    # a version this difflab does not know: one line, exit 2
    with h5py.File(old, "a") as f:
        f.attrs["schema_version"] = 0
    r = runner.invoke(app, ["show", str(old)])
    assert r.exit_code == 2 and "schema_version 0; this difflab reads 1 and 2" in r.output
