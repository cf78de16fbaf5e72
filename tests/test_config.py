"""Target files: the shipped ones load, generators expand, and every malformed file is one clear error."""

import os
import re
from pathlib import Path

import numpy as np
import pytest

from difflab.errors import ConfigError
from difflab.targets import parse_target
from difflab.targets.files import load_target, read_target_spec, shipped_targets

GOOD_GAUSS = "kind: gaussian\nmean: [0.0, 1.0]\ncov: [[1.0, 0.5], [0.5, 2.0]]\n"

# (file text, key the message must name, words the message must contain)
BAD = [
    ("kind: gaussian\nmean: [0, 1\n", "", "YAML syntax error at line"),
    ("", "", "empty"),
    ("- 1\n- 2\n", "", "expected a mapping"),
    ("mean: [0]\ncov: 1\n", "kind", "missing required key"),
    ("kind: gausian\nmean: [0]\ncov: 1\n", "kind", "did you mean 'gaussian'"),
    ("kind: gaussian\nmean: [0]\ncov: 1\nmeen: 2\n", "meen", "unknown key"),
    ("kind: gaussian\ncov: 1\n", "mean", "missing required key"),
    ("kind: gaussian\nmean: [0, 1]\n", "cov", "missing required key"),
    ("kind: gaussian\nmean: [0, 1]\ncov: [[1, 0, 0], [0, 1, 0], [0, 0, 1]]\n", "cov", "2x2 matrix"),
    ("kind: gaussian\nmean: [0, 1]\ncov: [1, 2, 3]\n", "cov", "2 diagonal entries"),
    ("kind: gaussian\nmean: [0, 1]\ncov: [[1, 0.5], [0.4, 1]]\n", "cov", "must be symmetric"),
    ("kind: gaussian\nmean: [0, 1]\ncov: [[1, 2], [2, 1]]\n", "cov", "must be positive definite"),
    ("kind: gaussian\nmean: [0, 1]\ncov: 0\n", "cov", "must be positive definite"),
    ("kind: gaussian\nmean: [0, .nan]\ncov: 1\n", "mean[1]", "must be finite"),
    ("kind: gaussian\nmean: [0, .inf]\ncov: 1\n", "mean[1]", "must be finite"),
    ("kind: gaussian\nmean: [0, yes]\ncov: 1\n", "mean[1]", "expected a number"),
    ("kind: gaussian\nmean: [0, abc]\ncov: 1\n", "mean[1]", "expected a number"),
    ("kind: gaussian\nmean: []\ncov: 1\n", "mean", "non-empty list"),
    ("kind: gmm\n", "", "exactly one of"),
    ("kind: gmm\nring: {k: 8, radius: 4, std: 0.5}\nrandom: {k: 2, dim: 2, seed: 0}\n", "", "exactly one of"),
    ("kind: gmm\ncomponents: []\n", "components", "non-empty list"),
    ("kind: gmm\ncomponents:\n  - {weight: -0.2, mean: [0], cov: 1}\n  - {weight: 1, mean: [1], cov: 1}\n",
     "components[0].weight", "must be >= 0"),
    ("kind: gmm\ncomponents:\n  - {weight: 0, mean: [0], cov: 1}\n  - {weight: 0, mean: [1], cov: 1}\n",
     "components", "positive sum"),
    ("kind: gmm\ncomponents:\n  - {weight: 1, mean: [0], cov: 1}\n  - {weight: 1, mean: [1, 2], cov: 1}\n",
     "components[1].mean", "expected dimension 1"),
    ("kind: gmm\ncomponents:\n  - {weight: 1, mean: [0], cov: 1}\n  - {weight: 1, mean: [1], cov: [[-1]]}\n",
     "components[1].cov", "must be positive definite"),
    ("kind: gmm\ncomponents:\n  - {weight: 1, mean: [0], cov: 1, color: red}\n", "components[0].color", "unknown key"),
    ("kind: gmm\ncomponents:\n  - {mean: [0], cov: 1}\n", "components[0].weight", "missing required key"),
    ("kind: gmm\ncomponents:\n  - 3\n", "components[0]", "expected a mapping"),
    ("kind: gmm\nring: {k: 0, radius: 4, std: 0.5}\n", "ring.k", "must be >= 1"),
    ("kind: gmm\nring: {k: 8, radius: 4, std: -0.5}\n", "ring.std", "must be > 0"),
    ("kind: gmm\nring: {k: 8, radius: 4}\n", "ring.std", "missing required key"),
    ("kind: gmm\nring: {k: 2.5, radius: 4, std: 1}\n", "ring.k", "expected an integer"),
    ("kind: gmm\nrandom: {k: 2, dim: 3, sed: 1}\n", "random.sed", "did you mean 'seed'"),
    ("kind: gaussian\nname: 'a b/c'\nmean: [0]\ncov: 1\n", "name", "expected a word"),
]


@pytest.mark.parametrize("text,key,words", BAD)
def test_bad_target_is_one_clear_error(tmp_path, text, key, words):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_target(str(f))
    msg = str(err.value)
    assert msg.startswith(f"{f}: "), msg
    if key:
        assert f": {key}: " in msg, msg
    assert words in msg, msg
    assert "\n" not in msg


def test_numeric_strings_are_numbers(tmp_path):
    """PyYAML reads 1e-3 (no dot) as a string; difflab converts it explicitly."""
    f = tmp_path / "t.yaml"
    f.write_text("kind: gaussian\nmean: [1e-3, 0]\ncov: 2e0\n")
    spec, t = load_target(str(f))
    assert spec.means[0][0] == 1e-3 and t.covs[0][0, 0] == 2.0


@pytest.mark.parametrize("cov,expect", [(2.0, [[2, 0], [0, 2]]), ([1.0, 3.0], [[1, 0], [0, 3]]),
                                        ([[1.0, 0.5], [0.5, 2.0]], [[1, 0.5], [0.5, 2]])])
def test_covariance_spellings(tmp_path, cov, expect):
    f = tmp_path / "t.yaml"
    f.write_text(f"kind: gaussian\nmean: [0, 1]\ncov: {cov}\n")
    spec, t = load_target(str(f))
    assert t.covs[0].tolist() == expect
    assert spec.name == "t"  # defaults to the file's stem


@pytest.mark.parametrize("ref", ["gmm", "gmm.yaml", "gaussian", "gmm50", "bimodal1d.yaml"])
def test_shipped_names_resolve_from_any_folder(tmp_path, ref):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        spec = read_target_spec(ref)
    finally:
        os.chdir(cwd)
    assert spec.name == ref.removesuffix(".yaml")
    assert "(shipped)" in spec.source


def test_a_path_wins_over_a_shipped_name(tmp_path):
    (tmp_path / "gmm").write_text(GOOD_GAUSS)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        spec = read_target_spec("gmm")
    finally:
        os.chdir(cwd)
    assert spec.kind == "gaussian" and spec.source == "gmm"


SHIPPED = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "targets").glob("*.yaml"))


def test_unknown_target_lists_the_shipped_ones():
    assert {"gaussian", "gmm", "gmm50", "ising6"} <= set(SHIPPED)
    with pytest.raises(ConfigError, match=r"--target: no file 'gmn' and no shipped target 'gmn' \(did you mean "
                       rf"'gmm'\?\); shipped: {re.escape(', '.join(SHIPPED))}$"):
        read_target_spec("gmn")


# Kinds that cannot ship an example: a user's score needs the user's plug-in loaded.
NEEDS_USER_CODE = {"score"}


def test_shipped_targets_follow_the_target_contract_and_cover_every_kind():
    """Every shipped file (the folder's files, not a list kept here) parses, builds a target of the
    target contract whose declarations hold, and every built-in kind has at least one shipped file."""
    from difflab.contracts import DiscreteTarget, Target
    from difflab.targets import KINDS

    assert list(shipped_targets()) == SHIPPED
    kinds = set()
    for name in SHIPPED:
        spec, t = load_target(name)
        kinds.add(spec.kind)
        assert t.spec is spec and t.kind == spec.kind and t.dim >= 1 and KINDS[spec.kind].discrete == t.discrete
        assert isinstance(t, DiscreteTarget if t.discrete else Target), name
        if not t.discrete:
            x = t.sample(np.random.default_rng(0), 3)
            assert x.shape == (3, t.dim) and np.isfinite(t.log_prob(x)).all() and t.score(x).shape == x.shape
            assert (t.components is not None) == (spec.kind in ("gaussian", "gmm")), name
    assert {k for k in KINDS if KINDS.is_builtin(k)} - NEEDS_USER_CODE <= kinds


BOMB = """a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


@pytest.mark.system
@pytest.mark.parametrize("where", ["target", "spec", "sweep", "set"])
def test_yaml_alias_bombs_are_refused_in_one_line(tmp_path, where):
    """A billion-laughs document (10^9 values from 10 lines) as a target (in a checked key), a run
    spec, a sweep spec or a --set value: one line naming the file, exit 2, within 60 s under a 2 GB
    address-space cap (unbounded, the error message alone used 4-5 GB)."""
    import resource
    import subprocess
    import sys

    bomb = tmp_path / "bomb.yaml"
    if where == "target":
        bomb.write_text(BOMB + "kind: gaussian\nmean: *i\ncov: 1.0\n")
        argv = ["sample", "ula", "-t", str(bomb), "--steps", "2", "-o", str(tmp_path / "x.h5")]
    elif where == "spec":
        bomb.write_text(BOMB.replace("a:", "x_a:", 1) + "step_size: *i\n")
        argv = ["sample", "ula", "-t", "gaussian", "--spec", str(bomb), "-o", str(tmp_path / "x.h5")]
    elif where == "sweep":
        bomb.write_text(BOMB + "sampler: ula\ntarget: gaussian\ngrid: {step_size: *i}\n")
        argv = ["sweep", str(bomb)]
    else:
        argv = ["sample", "ula", "-t", "gaussian", "--set", "step_size=" + BOMB, "-o", str(tmp_path / "x.h5")]

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    r = subprocess.run([sys.executable, "-m", "difflab", *argv], capture_output=True, text=True, timeout=60, check=False,
                       preexec_fn=cap, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr[-500:])
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr[-500:]
    if where != "set":
        assert "bomb.yaml" in r.stderr and "aliases" in r.stderr, r.stderr
    assert not (tmp_path / "x.h5").exists()


def test_documents_with_a_few_aliases_and_every_shipped_target_are_read():
    """Negative control of the bound: aliases as such are fine (here 10^4 values), and so is every
    shipped target file; the bound sits between them and the bomb's 10^9."""
    from pathlib import Path

    from difflab import yamlio

    doc = yamlio.load(BOMB.split("e:")[0], "small.yaml")
    assert len(doc["d"]) == 10 and doc["d"][0][0][0] == [1] * 10
    for f in (Path(__file__).parents[1] / "targets").glob("*.yaml"):
        assert isinstance(yamlio.load(f.read_text(), f.name), dict)


@pytest.mark.parametrize("depth", [60, pytest.param(5000, marks=pytest.mark.slow),
                                   pytest.param(100_000, marks=pytest.mark.slow)])
def test_deeply_nested_yaml_is_refused_in_one_line(tmp_path, depth):
    """Lists nested 60, 5,000 and 100,000 deep (the parser recurses per level): one line naming the
    file, exit 2, no traceback, nothing written; 40 levels still read (negative control)."""
    from typer.testing import CliRunner

    from difflab import yamlio
    from difflab.cli.app import app
    from difflab.errors import ConfigError

    f = tmp_path / "deep.yaml"
    f.write_text("kind: gaussian\nmean: " + "[" * depth + "0" + "]" * depth + "\ncov: 1.0\n")
    r = CliRunner().invoke(app, ["sample", "ula", "-t", str(f), "-o", str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "deep.yaml" in r.output and "nests deeper" in r.output, r.output
    assert "Traceback" not in r.output and not (tmp_path / "x.h5").exists()
    assert yamlio.load("a: " + "[" * 40 + "0" + "]" * 40, "ok.yaml")
    with pytest.raises(ConfigError):
        yamlio.load("a: " + "[" * depth + "0" + "]" * depth, "deep.yaml")


OVERFLOWING = [
    ("kind: gaussian\nmean: [1e308, 0]\ncov: 1.0\n", "mean[0]: must be at most 1e+100"),
    ("kind: gaussian\nmean: [0, 0]\ncov: 1e308\n", "cov: must be at most 1e+100"),
    ("kind: gmm\ncomponents:\n  - {weight: 1e308, mean: [0], cov: 1}\n  - {weight: 1e308, mean: [1], cov: 1}\n",
     "components[0].weight: must be at most"),
    ("kind: gaussian\nmean: [1" + "0" * 400 + ", 0]\ncov: 1.0\n", "integer of about 401 digits"),
    ("kind: gaussian\nmean: [1" + "0" * 5000 + ", 0]\ncov: 1.0\n", "more than 4,300 digits"),
    ("kind: gaussian\nmean: [0, 1]\ncov: 1.0\ntilt: {lambda: 1e300, b: [1, 0]}\n", "tilt.lambda: must be at most"),
]


@pytest.mark.parametrize("text, message", OVERFLOWING)
def test_numbers_that_overflow_float64_are_refused_at_load(tmp_path, text, message):
    """Values whose squares or products overflow float64 (or that no float holds) are refused when
    the target is read, naming the key, instead of a run 'diverged at step 1' or NaN metrics; 1e100
    itself is accepted (negative control)."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_target(text, "t.yaml", "t")
    parse_target("kind: gaussian\nmean: [1e100, 0]\ncov: 1.0\n", "t.yaml", "t")


def test_a_set_value_no_float_holds_is_one_line():
    from difflab.run.settings import coerce

    with pytest.raises(ConfigError, match="a float can hold"):
        coerce("--set", "step_size", 10**400, float)


OVERSIZED = [
    ("kind: gmm\nrandom: {k: 4, dim: 100000, seed: 0}\n", "random: 4 component(s) in 100000 dimensions"),
    ("kind: gmm\nring: {k: 1000000000, radius: 4, std: 1}\n", "ring.k: 1000000000 component(s)"),
    pytest.param("kind: gaussian\nmean: " + str([0] * 100_000) + "\ncov: 1.0\n", "mean: 1 component(s) in 100000 dimensions",
                 marks=pytest.mark.slow),
    ("kind: ising\nn: 200000\ngraph: complete\ncoupling: 0.1\n", "n: the state space has 2^200000 states"),
    ("kind: pmf\nalphabet: 2\ndim: 20000\nprobs: [1, 1]\n", "the state space has 2^20000 states"),
]


@pytest.mark.parametrize("text, message", OVERSIZED)
def test_oversized_targets_are_refused_before_anything_is_built(text, message):
    """A 100,000-dimensional random mixture (a 74.5 GiB allocation attempted before), a 10^9-point
    ring, a complete Ising graph on 200,000 sites (edges built before the state count was checked)
    and a pmf with 2^20000 states (whose error message itself failed): one line naming the key,
    before any covariance, edge list or state table is built."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_target(text, "t.yaml", "t")


@pytest.mark.slow
def test_a_run_whose_mixture_evaluations_exceed_memory_is_refused(tmp_path):
    """--target-set ring.k=1000000 passes the file's size rule, but 1,000 particles on 10^6
    components need ~60 GiB of (K, d, n) evaluations: refused before the run (149 GiB attempted before)."""
    from typer.testing import CliRunner

    from difflab.cli.app import app

    r = CliRunner().invoke(app, ["sample", "ula", "-t", "gmm", "--target-set", "ring.k=1000000",
                                 "-o", str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "components need about" in r.output and "GiB" in r.output, r.output
    assert not (tmp_path / "x.h5").exists()


def test_a_list_kind_and_a_file_name_with_a_space_are_handled():
    """kind: [gaussian] is one line naming the key (it was a TypeError traceback); a valid file
    named 'my target.yaml' without a name: key is read, named my_target (it was refused with a
    complaint about a name: key it does not have)."""
    with pytest.raises(ConfigError, match=r"t.yaml: kind: expected one of"):
        parse_target("kind: [gaussian]\nmean: [0]\ncov: 1\n", "t.yaml", "t")
    assert parse_target("kind: gaussian\nmean: [0]\ncov: 1\n", "my target.yaml", "my target").name == "my_target"


def test_yaml_is_parsed_by_libyaml_unless_it_could_nest_too_deep():
    """Plain files (every shipped target, a 1 MB matrix) go to libyaml's safe loader and give the
    same document as PyYAML's; a file that could nest deeper than C_DEPTH goes to the Python loader
    (libyaml's recursive composer would overflow the C stack), even when quotes, comments or stray
    closing brackets try to hide the depth, and is refused in one line."""
    from pathlib import Path

    import yaml

    from difflab import yamlio

    root = Path(__file__).resolve().parents[1] / "targets"
    for f in root.glob("*.yaml"):
        text = f.read_text()
        assert yamlio._loader(text) is yaml.CSafeLoader and yamlio.load(text, f.name) == yaml.safe_load(text)
    big = "\n".join(f"k{i}: [{', '.join(str(j * 0.5) for j in range(40))}]  # [ ' {{" for i in range(300))
    assert yamlio._loader(big) is yaml.CSafeLoader and yamlio.load(big, "big") == yaml.safe_load(big)
    n = yamlio.C_DEPTH + 1
    indented = "-\n" + " " * n + "- x"  # the loader is chosen by the line's indentation alone
    assert yamlio._loader(indented) is yaml.SafeLoader
    for deep in ("[" * n + "]" * n, "- " * n + "x", "x: ']]]]]]]]'  # ]]]]]]\ny: " + "[" * n + "]" * n,
                 "a: b]]]]]]]\nc: " + "{d: " * n + "1" + "}" * n):
        assert yamlio._loader(deep) is yaml.SafeLoader, deep[:40]  # (their refusal: the tests above)
    with pytest.raises(ConfigError, match="nests deeper"):
        yamlio.load("- " * n + "x", "deep")
