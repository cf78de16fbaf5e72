"""The Python API does what the CLI does: the same samples and summaries bit for bit, the same
run files, the same compare numbers, the same one-line errors."""

import csv
import io

import numpy as np
import pytest
from typer.testing import CliRunner

import difflab
from difflab.cli.app import app
from difflab.errors import DifflabError
from difflab.run.io import read_run

runner = CliRunner()

CASES = [  # (CLI arguments, API call)
    (["mala", "-t", "gmm", "-n", "300", "--steps", "40", "--seed", "4", "--step-size", "0.2"],
     dict(sampler="mala", target="gmm", particles=300, steps=40, seed=4, step_size=0.2)),
    pytest.param(["ula", "-t", "gaussian", "-n", "5000", "--steps", "10"],  # chunked on threads
                 dict(sampler="ula", target="gaussian", particles=5000, steps=10),
                 marks=pytest.mark.slow),  # slow: floors of 5,000 particles (100 sets) on a fresh cache
    (["ddpm", "-t", "gmm-classes", "-n", "300", "--steps", "20", "--guidance", "cfg", "--class", "right"],
     dict(sampler="ddpm", target="gmm-classes", particles=300, steps=20, guidance="cfg", class_="right")),
    (["gibbs", "-t", "ising6", "-n", "300", "--steps", "10", "--init", "target"],
     dict(sampler="gibbs", target="ising6", particles=300, steps=10, init="target")),
    (["pflow", "-t", "gmm", "-n", "200", "--steps", "8", "--target-set", "ring.radius=6"],
     dict(sampler="pflow", target="gmm", particles=200, steps=8, target_set={"ring.radius": 6})),
]


@pytest.mark.parametrize("argv, call", CASES, ids=[(c.values if hasattr(c, "values") else c)[0][0] for c in CASES])
def test_api_and_cli_give_the_same_run(tmp_path, monkeypatch, argv, call):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["sample", *argv, "-q", "-o", "cli.h5"])
    assert r.exit_code == 0, r.output
    cli = read_run("cli.h5", everything=True)
    api = difflab.sample(call.pop("sampler"), **call)
    assert api.path == "" and not (tmp_path / "runs").exists()  # nothing written unless asked
    np.testing.assert_array_equal(api.samples, cli.samples)
    np.testing.assert_array_equal(api.trajectory, cli.trajectory)
    assert api.params == cli.params and api.summary == cli.summary
    for k in cli.metrics:
        np.testing.assert_array_equal(api.metrics[k], cli.metrics[k])
    api.save("api.h5")
    saved = read_run("api.h5", everything=True)
    np.testing.assert_array_equal(saved.samples, cli.samples)
    assert saved.summary == cli.summary and saved.params == cli.params
    assert {k: v for k, v in saved.attrs.items() if k not in ("argv", "created", "wall_time_s")} == \
        {k: v for k, v in cli.attrs.items() if k not in ("argv", "created", "wall_time_s")}


def test_save_refuses_to_overwrite_and_load_reads_everything(tmp_path):
    run = difflab.sample("pflow", target="gaussian", particles=100, steps=5, likelihood=True, likelihood_points=7)
    path = run.save(tmp_path / "r.h5")
    with pytest.raises(DifflabError, match="exists"):
        run.save(path)
    back = difflab.load(path)
    assert back.groups["likelihood"]["loglik_ode"].shape == (7,) and back.status == "complete"
    np.testing.assert_array_equal(back.groups["likelihood"]["points"], run.groups["likelihood"]["points"])


@pytest.mark.parametrize("ref", ["gaussian", "TARGETS/gaussian.yaml", "TEXT", "MAPPING"])
def test_load_target_takes_a_name_a_path_yaml_or_a_mapping(ref):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "targets" / "gaussian.yaml"
    ref = {"TARGETS/gaussian.yaml": str(path), "TEXT": path.read_text(),
           "MAPPING": {"kind": "gaussian", "mean": [0.0, 1.0], "cov": [[1.0, 0.5], [0.5, 2.0]]}}.get(ref, ref)
    t = difflab.load_target(ref)
    np.testing.assert_allclose(t.cov, [[1.0, 0.5], [0.5, 2.0]])
    x = np.array([[0.3, -0.2]])
    h = 1e-6  # the score is the gradient of the log density (central differences)
    fd = [(t.log_prob(x + h * e) - t.log_prob(x - h * e))[0] / (2 * h) for e in np.eye(2)]
    np.testing.assert_allclose(t.score(x)[0], fd, rtol=1e-6)


def test_a_loaded_target_runs_as_its_file_and_takes_overrides():
    t = difflab.load_target("gmm", ring__radius=6)
    assert np.allclose(np.linalg.norm(t.means, axis=1), 6.0)
    a = difflab.sample("ula", target=t, particles=100, steps=5)
    b = difflab.sample("ula", target="gmm", target_set={"ring.radius": 6}, particles=100, steps=5)
    np.testing.assert_array_equal(a.samples, b.samples)


def test_compare_returns_the_numbers_the_cli_prints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for h in ("0.01", "0.05"):
        assert runner.invoke(app, ["sample", "ula", "-n", "200", "--steps", "20", "--step-size", h, "-q",
                                   "-o", f"u{h}.h5"]).exit_code == 0
    memory = difflab.sample("mala", particles=200, steps=20)
    out = runner.invoke(app, ["compare", "u0.01.h5", "u0.05.h5", "--csv"]).output
    cli_rows = list(csv.DictReader(io.StringIO(out)))
    api_rows = difflab.compare(["u0.01.h5", "u0.05.h5"])
    assert [r["run"] for r in api_rows] == [r["run"] for r in cli_rows]
    for a, c in zip(api_rows, cli_rows):
        assert set(a) == set(c) - {"error"}
        assert float(c["sliced_w2"]) == a["sliced_w2"] and float(c["step_size"]) == a["step_size"]
    mixed = difflab.compare([memory, "u0.01.h5"], metrics=["sliced_w2"], sort="sliced_w2")
    assert {r["sampler"] for r in mixed} == {"ula", "mala"} and "sliced_w2" in mixed[0]
    frame = difflab.compare(["u0.01.h5", "u0.05.h5"], as_frame=True)
    assert list(frame["sliced_w2"]) == [r["sliced_w2"] for r in api_rows]


@pytest.mark.parametrize("call, cli", [
    (dict(sampler="mala", step_size=-1.0), ["mala", "--step-size", "-1"]),
    (dict(sampler="ddpm", steps=2000), ["ddpm", "--steps", "2000"]),
    (dict(sampler="gibbs", target="gmm"), ["gibbs", "-t", "gmm"]),
    (dict(sampler="mala", target="nope"), ["mala", "-t", "nope"]),
])
def test_errors_are_difflabs_own_with_the_cli_message(tmp_path, monkeypatch, call, cli):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DifflabError) as info:
        difflab.sample(call.pop("sampler"), **call)
    r = runner.invoke(app, ["sample", *cli])
    assert r.exit_code == 2 and r.output.strip() == f"error: {info.value}"


def test_unknown_options_and_samplers_are_refused():
    with pytest.raises(DifflabError, match="step_sise: not an option of difflab sample mala .did you mean 'step_size'"):
        difflab.sample("mala", step_sise=0.1)
    with pytest.raises(DifflabError, match="unknown sampler 'malla'"):
        difflab.sample("malla")


def test_run_to_xarray_and_inference_data(tmp_path):
    """In memory, the layout ``difflab export`` writes: the same posterior and sample stats."""
    import arviz as az

    run = difflab.sample("mala", particles=50, steps=20, trajectory_particles=10)
    ds = run.to_xarray()
    assert ds["samples"].shape == (50, 2) and ds["trajectory"].shape == (21, 10, 2)
    np.testing.assert_array_equal(ds["per_step_acceptance_rate"].values, run.per_step["acceptance_rate"])
    idata = run.to_inference_data()
    run.save(tmp_path / "r.h5")
    assert runner.invoke(app, ["export", str(tmp_path / "r.h5"), "-o", str(tmp_path / "r.nc")]).exit_code == 0
    exported = az.from_netcdf(tmp_path / "r.nc")
    assert idata.posterior["x"].shape == (10, 21, 2)
    np.testing.assert_array_equal(idata.posterior["x"].values, exported.posterior["x"].values)
    np.testing.assert_array_equal(idata.sample_stats["acceptance_rate"].values,
                                  exported.sample_stats["acceptance_rate"].values)


def test_a_sampler_object_runs_through_the_same_machinery():
    """A sampler object (built on the target) runs as it is: the same samples as the registered
    sampler, its scalar fields recorded as parameters, its exact law computed if it declares an
    affine step; an object that is no sampler is one DifflabError."""
    from difflab.samplers.kinetic import ULD
    from difflab.samplers.langevin import ULA

    g = difflab.load_target("gaussian")
    obj = difflab.sample(ULA(g, 0.05), target=g, particles=300, steps=20, seed=2)
    reg = difflab.sample("ula", target="gaussian", particles=300, steps=20, seed=2, step_size=0.05)
    np.testing.assert_array_equal(obj.samples, reg.samples)
    assert obj.params["step_size"] == 0.05 and obj.summary["exact_kl"] == reg.summary["exact_kl"]
    uld = difflab.sample(ULD(g, 0.2, 1.0, "obabo"), target=g, particles=100, steps=10, init="target")
    assert uld.params["splitting"] == "obabo" and uld.summary["exact_kl"] > 0
    with pytest.raises(DifflabError, match="lacks init, step"):
        difflab.sample(object(), target=g)
