"""--set, --target-set and --spec: parsing, precedence (flags > --set > spec > defaults), errors,
and that an override makes exactly the run an edited target file would make."""

import re

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from difflab.cli.app import app
from difflab.errors import ConfigError
from difflab.run.io import read_run
from difflab.run.settings import parse_assignment
from difflab.targets.files import apply_target_sets, shipped_targets

runner = CliRunner()
FAST = ["--particles", "50", "-q"]


def _run(tmp_path, *args):
    r = runner.invoke(app, ["sample", *args])
    files = sorted((tmp_path / "runs").glob("*.h5")) if (tmp_path / "runs").exists() else []
    return r, files


@pytest.mark.parametrize("text, value", [
    ("step_size=0.1", 0.1), ("steps=20", 20), ("adapt=true", True), ("solver=heun", "heun"),
    ("mean=[1, 2.5]", [1, 2.5]), ("name= ring ", "ring"), ("x=a=b", "a=b"),
])
def test_values_are_read_as_yaml(text, value):
    key, got = parse_assignment("--set", text)
    assert got == value and type(got) is type(value) and "=" not in key


@pytest.mark.parametrize("text", ["step_size", "=3", ""])
def test_assignment_needs_key_and_equals(text):
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_assignment("--set", text)


def test_precedence_flag_over_set_over_spec_over_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text("sampler: ula\nsteps: 30\nseed: 4\nstep_size: 0.02\n")
    cases = [  # (extra arguments, expected (steps, seed, step_size))
        ([], (1000, 0, 0.01)),  # the command's defaults (steps cut below by --steps for speed)
        (["--spec", "run.yaml"], (30, 4, 0.02)),
        (["--spec", "run.yaml", "--set", "steps=20"], (20, 4, 0.02)),
        (["--spec", "run.yaml", "--set", "steps=20", "--steps", "20", "--seed", "5"], (20, 5, 0.02)),
        (["--spec", "run.yaml", "--steps", "10"], (10, 4, 0.02)),
    ]
    for extra, (steps, seed, h) in cases:
        if not extra:  # defaults: only check the values the spec would change, on a short run
            extra = ["--steps", "1000", "--target", "gaussian"]
        r = runner.invoke(app, ["sample", "ula", *FAST, *extra])
        assert r.exit_code == 0, (extra, r.output)
        run = read_run(r.stdout.strip().splitlines()[-1])
        assert (run.params["steps"], run.attrs["seed"], run.params["step_size"]) == (steps, seed, h), extra


def test_spec_alone_names_the_sampler_and_matches_the_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text("sampler: mala\ntarget: gaussian\nsteps: 25\nparticles: 40\nstep-size: 0.3\n")
    r1 = runner.invoke(app, ["sample", "--spec", "run.yaml"])
    assert r1.exit_code == 0, r1.output
    r2 = runner.invoke(app, ["sample", "mala", "--target", "gaussian", "--steps", "25", "-n", "40",
                             "--step-size", "0.3", "-o", "flags.h5", "-q"])
    assert r2.exit_code == 0, r2.output
    files = sorted((tmp_path / "runs").glob("*.h5"))
    assert len(files) == 1
    a, b = read_run(files[0], samples=True), read_run(tmp_path / "flags.h5", samples=True)
    np.testing.assert_array_equal(a.samples, b.samples)  # bit-identical
    assert a.params == b.params


@pytest.mark.parametrize("args, spec, message", [
    (["ula", "--set", "step_sise=0.1"], None, "--set: step_sise: not an option of difflab sample ula (did you mean 'step_size'?)"),
    (["ula", "--set", "steps=ten"], None, "--set: steps: expected an integer, got 'ten'"),
    (["ula", "--set", "steps"], None, "--set 'steps': expected KEY=VALUE"),
    (["ula", "--set", "seed=2", "--seed", "3"], None, "--set seed=2 disagrees with --seed 3"),
    (["ula", "--set", "out=x.h5"], None, "--set: out: not settable here"),
    (["ula", "--spec", "run.yaml"], "steps: 20\nwarmpu: 3\n", "run.yaml: warmpu: not an option of difflab sample ula"),
    (["mala", "--spec", "run.yaml"], "sampler: ula\n", "run.yaml: sampler: the spec is for 'ula', not 'mala'"),
    (["--spec", "run.yaml"], "steps: 20\n", "run.yaml: sampler: expected one of"),
    (["--spec", "run.yaml"], "[1, 2]\n", "run.yaml: expected a mapping of option: value"),
    (["--spec", "missing.yaml"], None, "missing.yaml: cannot read the --spec file"),
    (["ula", "--target-set", "ring.radus=6"], None, "ring.radus: unknown key (did you mean 'radius'?)"),
    (["ula", "--target-set", "ring.radius=-1"], None, "ring.radius: must be >= 0, got -1.0"),
    (["ula", "--target-set", "rign.radius=6"], None, "rign: unknown key (did you mean 'ring'?)"),
    (["ula", "--target-set", "ring.radius.x=6"], None, "ring.radius is a float (4.0), not a mapping or list"),
    (["ula", "--target", "gaussian", "--target-set", "mean.5=1"], None, "mean is a list of 2; expected an index 0..1"),
    (["ula", "--target-set", "ring..radius=6"], None, "expected a dotted path into the target YAML"),
])
def test_bad_settings_exit_2_naming_the_key_and_write_nothing(tmp_path, monkeypatch, args, spec, message):
    monkeypatch.chdir(tmp_path)
    if spec is not None:
        (tmp_path / "run.yaml").write_text(spec)
    r = runner.invoke(app, ["sample", *args, "--steps", "10"] if args[0] != "--spec" else ["sample", *args])
    assert r.exit_code == 2, r.output
    assert message in r.output, r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "runs").exists()


def test_target_set_is_the_edited_file(tmp_path, monkeypatch):
    """--target-set ring.radius=6 gives bit for bit the run of a copy of the file with radius 6,
    and a different file name from the unmodified target's run."""
    monkeypatch.chdir(tmp_path)
    doc = yaml.safe_load(shipped_targets()["gmm"])
    doc["ring"]["radius"] = 6
    (tmp_path / "gmm.yaml").write_text(yaml.safe_dump(doc))
    args = ["sample", "ula", "--steps", "20", "-n", "50", "-q"]
    r1 = runner.invoke(app, [*args, "--target", "gmm.yaml", "-o", "edited.h5"])
    r2 = runner.invoke(app, [*args, "--target-set", "ring.radius=6"])
    r3 = runner.invoke(app, [*args])
    assert r1.exit_code == r2.exit_code == r3.exit_code == 0, (r1.output, r2.output, r3.output)
    a, b, c = (read_run(p.strip(), samples=True) for p in (r1.stdout, r2.stdout, r3.stdout))
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(b.samples, c.samples)
    assert b.path != c.path and b.params["target.ring.radius"] == 6
    assert yaml.safe_load(b.target_yaml)["ring"]["radius"] == 6  # the run file holds the effective target
    # the recorded YAML rebuilds the same target: run it again from the stored text
    (tmp_path / "stored.yaml").write_text(b.target_yaml)
    r4 = runner.invoke(app, [*args, "--target", "stored.yaml", "-o", "again.h5"])
    assert r4.exit_code == 0, r4.output
    np.testing.assert_array_equal(read_run("again.h5", samples=True).samples, b.samples)


def test_target_set_reaches_into_lists_and_creates_blocks():
    doc = {"kind": "gmm", "components": [{"mean": [0, 0], "cov": 1}, {"mean": [1, 1], "cov": 1}]}
    out = apply_target_sets(doc, (("components.1.mean", [2, 3]), ("tilt.lambda", 0.5)), "t.yaml")
    assert out["components"][1]["mean"] == [2, 3] and out["tilt"] == {"lambda": 0.5}
    assert doc["components"][1]["mean"] == [1, 1] and "tilt" not in doc  # the input is not changed


def test_target_set_bracket_index_and_spec_block(tmp_path, monkeypatch):
    """components[0].mean (the notation of error messages) and a spec's target_set: block work, and
    the command line's --target-set wins over the spec's."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.yaml").write_text("kind: gmm\ncomponents:\n  - {weight: 1, mean: [0, 0], cov: 1}\n  - {weight: 1, mean: [3, 0], cov: 1}\n")
    (tmp_path / "run.yaml").write_text("target: t.yaml\ntarget_set: {components.0.mean: [1, 1]}\n")
    r = runner.invoke(app, ["sample", "ula", "--spec", "run.yaml", "--steps", "5", "-n", "20", "-q",
                            "--target-set", "components[1].mean=[5, 5]"])
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load(read_run(r.stdout.strip()).target_yaml)
    assert doc["components"][0]["mean"] == [1, 1] and doc["components"][1]["mean"] == [5, 5]
    r = runner.invoke(app, ["sample", "ula", "--spec", "run.yaml", "--steps", "5", "-n", "20", "-q",
                            "--target-set", "components.0.mean=[2, 2]"])
    assert yaml.safe_load(read_run(r.stdout.strip()).target_yaml)["components"][0]["mean"] == [2, 2]


def test_sweep_over_a_target_parameter(tmp_path, monkeypatch):
    """grid: {target_set.ring.radius: [...]} makes the same runs as --target-set, and compare can
    group by the override."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text("sampler: ula\nset: {particles: 30, steps: 10, target_set: {ring.std: 0.6}}\n"
                                     "grid: {target_set.ring.radius: [3, 5]}\n")
    r = runner.invoke(app, ["sweep", "s.yaml"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "runs").glob("*.h5"))) == 2
    r = runner.invoke(app, ["sample", "ula", "-n", "30", "--steps", "10", "-q", "--target-set", "ring.radius=5",
                            "--target-set", "ring.std=0.6"])
    assert r.exit_code == 2 and "the run file exists" in r.output  # the sweep already wrote exactly this run
    r = runner.invoke(app, ["compare", *map(str, (tmp_path / "runs").glob("*.h5")), "--by", "target.ring.radius",
                            "-m", "mean_error", "--json"])
    assert r.exit_code == 0, r.output
    assert re.search(r'"value": 3', r.output) and re.search(r'"value": 5', r.output)
