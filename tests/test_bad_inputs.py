"""The bad-input corpus (issue 19): every case must give exit 2, exactly one line on stderr naming
the problem, no traceback, and nothing written.

Cases are generated from the registry (every option of every built-in sampler against the values
its own rule refuses: a wrong type, a value outside its range, an unknown choice) and listed by
hand for target files, common options, --set/--spec/--target-set, sweep specs and run files. Each
runs through the real entry point (``difflab.cli.runner.run``: the one-line usage errors included),
in process, from an empty folder.
"""

import os
import sys

import pytest

from difflab.samplers import SAMPLERS, is_builtin

TARGET_OF = {"discrete": "ising6", "gibbs": "ising6", "smc": "gmm-tilted"}
CHEAP = ["-n", "10", "--steps", "2"]


def _option_cases():
    """(id, argv) for every option of every built-in sampler and the values its rule refuses."""
    cases = []
    for name, entry in SAMPLERS.items():
        if not is_builtin(name):
            continue
        base = ["sample", name, "-t", TARGET_OF.get(name, "gaussian"), *CHEAP, "-o", "x.h5"]
        for o in entry.options:
            if o.typ is bool:
                continue
            bad = ["no-such-choice"] if o.choices else []
            if o.typ in (int, float):
                bad.append("abc")
            if o.typ is int:
                bad.append("1.5")
            if o.check and o.typ in (int, float):
                for v in ("-1", "0", "-1e9", "nan", "inf", "2"):
                    try:
                        value = float(v) if o.typ is float else int(v)
                    except ValueError:
                        continue
                    if o.check(value):  # the option's own rule refuses it
                        bad.append(v)
            cases += [(f"{name} {o.flag} {v}", [*base, o.flag, v]) for v in bad]
    return cases


BAD_TARGETS = {
    "empty": "",
    "a list": "- kind: gaussian\n",
    "no kind": "mean: [0]\ncov: 1\n",
    "unknown kind": "kind: gausian\nmean: [0]\ncov: 1\n",
    "kind a list": "kind: [gaussian]\nmean: [0]\ncov: 1\n",
    "unknown key": "kind: gaussian\nmean: [0]\ncov: 1\ncolour: red\n",
    "no mean": "kind: gaussian\ncov: 1\n",
    "mean a string": "kind: gaussian\nmean: zero\ncov: 1\n",
    "mean a bool": "kind: gaussian\nmean: [true]\ncov: 1\n",
    "mean nan": "kind: gaussian\nmean: [.nan]\ncov: 1\n",
    "mean inf": "kind: gaussian\nmean: [.inf]\ncov: 1\n",
    "mean huge": "kind: gaussian\nmean: [1e308]\ncov: 1\n",
    "mean a 400-digit integer": "kind: gaussian\nmean: [1" + "0" * 400 + "]\ncov: 1\n",
    "mean empty": "kind: gaussian\nmean: []\ncov: 1\n",
    "cov negative": "kind: gaussian\nmean: [0]\ncov: -1\n",
    "cov zero": "kind: gaussian\nmean: [0]\ncov: 0\n",
    "cov not symmetric": "kind: gaussian\nmean: [0, 0]\ncov: [[1, 0.5], [0, 1]]\n",
    "cov not positive definite": "kind: gaussian\nmean: [0, 0]\ncov: [[1, 2], [2, 1]]\n",
    "cov wrong size": "kind: gaussian\nmean: [0, 0]\ncov: [[1, 0, 0], [0, 1, 0], [0, 0, 1]]\n",
    "cov ragged": "kind: gaussian\nmean: [0, 0]\ncov: [[1, 0], [0]]\n",
    "gmm without components": "kind: gmm\n",
    "gmm two sources": "kind: gmm\nring: {k: 4, radius: 2, std: 0.5}\nrandom: {k: 2, dim: 2, seed: 0}\n",
    "components empty": "kind: gmm\ncomponents: []\n",
    "component weight negative": "kind: gmm\ncomponents:\n  - {weight: -1, mean: [0], cov: 1}\n",
    "component dims differ": "kind: gmm\ncomponents:\n  - {weight: 1, mean: [0], cov: 1}\n  - {weight: 1, mean: [0, 1], cov: 1}\n",
    "component missing cov": "kind: gmm\ncomponents:\n  - {weight: 1, mean: [0]}\n",
    "ring k zero": "kind: gmm\nring: {k: 0, radius: 2, std: 0.5}\n",
    "ring std zero": "kind: gmm\nring: {k: 4, radius: 2, std: 0}\n",
    "ring radius negative": "kind: gmm\nring: {k: 4, radius: -2, std: 0.5}\n",
    "ring k huge": "kind: gmm\nring: {k: 1000000000, radius: 2, std: 0.5}\n",
    "random dim huge": "kind: gmm\nrandom: {k: 4, dim: 100000, seed: 0}\n",
    "random seed negative": "kind: gmm\nrandom: {k: 2, dim: 2, seed: -1}\n",
    "tilt without reward": "kind: gaussian\nmean: [0]\ncov: 1\ntilt: {lambda: 1}\n",
    "tilt lambda huge": "kind: gaussian\nmean: [0]\ncov: 1\ntilt: {lambda: 1e300, b: [1]}\n",
    "name with a slash": "kind: gaussian\nname: a/b\nmean: [0]\ncov: 1\n",
    "yaml syntax": "kind: gaussian\nmean: [0\ncov: 1\n",
    "yaml tab": "kind: gaussian\n\tmean: [0]\n",
    "alias bomb": "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "kind: gaussian\nmean: *i\ncov: 1\n",
    "deep nesting": "kind: gaussian\nmean: " + "[" * 200 + "0" + "]" * 200 + "\ncov: 1\n",
    "python object tag": "kind: !!python/object/apply:os.system ['true']\nmean: [0]\ncov: 1\n",
    "ising n zero": "kind: ising\nn: 0\ncoupling: 0.1\n",
    "ising huge complete": "kind: ising\nn: 200000\ngraph: complete\ncoupling: 0.1\n",
    "ising unknown graph": "kind: ising\nn: 4\ngraph: torus\ncoupling: 0.1\n",
    "pmf huge": "kind: pmf\nalphabet: 2\ndim: 20000\nprobs: [1, 1]\n",
    "pmf wrong length": "kind: pmf\nalphabet: 2\ndim: 2\nprobs: [1, 1, 1]\n",
    "pmf negative": "kind: pmf\nalphabet: 2\ndim: 1\nprobs: [1, -1]\n",
}

COMMON = {
    "particles 1": ["-n", "1"],
    "particles 0": ["-n", "0"],
    "particles negative": ["-n", "-5"],
    "particles a word": ["-n", "many"],
    "particles beyond memory": ["-n", "1000000000000"],
    "steps 0": ["--steps", "0"],
    "steps a float": ["--steps", "2.5"],
    "steps beyond 64 bits": ["--steps", str(2**63)],
    "seed negative": ["--seed", "-1"],
    "seed 2^64": ["--seed", str(2**64)],
    "save-every 0": ["--save-every", "0"],
    "metrics-every negative": ["--metrics-every", "-1"],
    "trajectory-particles negative": ["--trajectory-particles", "-1"],
    "init unknown": ["--init", "nowhere"],
    "unknown option": ["--stepsize", "0.1"],
    "unknown target": ["-t", "no-such-target"],
    "target a folder": ["-t", "."],
    "out a folder": ["-o", "."],
    "out too long": ["-o", "a" * 230 + ".h5"],
    "out in an unwritable place": ["-o", "/proc/x.h5"],
    "set unknown key": ["--set", "stepsize=0.1"],
    "set no equals": ["--set", "step_size"],
    "set wrong type": ["--set", "step_size=abc"],
    "set huge integer": ["--set", "step_size=1" + "0" * 400],
    "set disagrees with flag": ["--set", "step_size=0.1", "--step-size", "0.2"],
    "target-set unknown path": ["--target-set", "nomean=1"],
    "target-set no equals": ["--target-set", "mean"],
    "spec missing": ["--spec", "no-such-spec.yaml"],
}

SPECS = {
    "spec a list": "- step_size: 0.1\n",
    "spec unknown key": "stepsize: 0.1\n",
    "spec wrong type": "step_size: abc\n",
    "spec other sampler": "sampler: mala\nstep_size: 0.1\n",
    "spec yaml syntax": "step_size: [0.1\n",
    "spec not settable": "quiet: true\n",
}

SWEEPS = {
    "sweep empty": "",
    "sweep no sampler": "grid: {seed: [1, 2]}\n",
    "sweep unknown sampler": "sampler: nope\n",
    "sweep unknown key": "sampler: ula\ngird: {seed: [1]}\n",
    "sweep grid not a list": "sampler: ula\ngrid: {seed: 1}\n",
    "sweep zip lengths differ": "sampler: ula\nzip: {seed: [1, 2], steps: [1]}\n",
    "sweep bad value": "sampler: ula\nset: {target: gaussian}\ngrid: {step_size: [0.1, -1]}\n",
    "sweep unknown option": "sampler: ula\ngrid: {stepsize: [0.1]}\n",
    "sweep yaml syntax": "sampler: ula\ngrid: {seed: [1, 2}\n",
}

BIG = "kind: gaussian\nmean: [0]\ncov: 1\n" + "#" * (64 * 2**20) + "\n"  # a comment past the 64 MiB bound

RUN_FILES = {
    "not hdf5": b"this is not a run file",
    "empty": b"",
}


def _cases():
    cases = _option_cases()
    for key, text in BAD_TARGETS.items():
        cases.append((f"target: {key}", ["sample", "ula", "-t", "bad.yaml", *CHEAP, "-o", "x.h5"], {"bad.yaml": text}))
    cases.append(("target: larger than 64 MiB", ["sample", "ula", "-t", "big.yaml", *CHEAP, "-o", "x.h5"],
                  {"big.yaml": BIG}))
    cases.append(("target: a named pipe", ["sample", "ula", "-t", "fifo.yaml", *CHEAP, "-o", "x.h5"], {"fifo.yaml": None}))
    cases.append(("sweep spec larger than 64 MiB", ["sweep", "w.yaml"], {"w.yaml": "sampler: ula\n" + BIG[38:]}))
    for key, extra in COMMON.items():
        cases.append((f"option: {key}", ["sample", "ula", "-t", "gaussian", "--steps", "2", "-o", "x.h5", *extra]))
    for key, text in SPECS.items():
        cases.append((key, ["sample", "ula", "-t", "gaussian", *CHEAP, "--spec", "s.yaml", "-o", "x.h5"],
                      {"s.yaml": text}))
    for key, text in SWEEPS.items():
        cases.append((key, ["sweep", "w.yaml"], {"w.yaml": text}))
    for key, data in RUN_FILES.items():
        for command in (["show", "r.h5"], ["export", "r.h5", "-o", "x.nc"], ["plot", "r.h5", "-o", "x.png"],
                        ["sample", "pflow", "-t", "gaussian", *CHEAP, "--likelihood", "--points", "r.h5",
                         "-o", "x.h5"]):
            cases.append((f"run file {key}: {command[0]}", command, {"r.h5": data}))
    for command in (["show", "missing.h5"], ["export", "missing.h5"], ["compare", "missing.h5", "--by", "steps"]):
        cases.append((f"missing run file: {command[0]}", command))
    return [c if len(c) == 3 else (*c, {}) for c in cases]


CASES = _cases()


def test_the_corpus_has_at_least_250_inputs():
    assert len(CASES) >= 250, len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, monkeypatch, capsys):
    from difflab.cli import runner
    from difflab.cli.app import app, sample_app

    _, argv, files = case
    monkeypatch.chdir(tmp_path)
    for name, content in files.items():
        if content is None:  # a named pipe: reading it would block
            os.mkfifo(tmp_path / name)
        else:
            (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.setattr(sys, "argv", ["difflab", *argv])
    with pytest.raises(SystemExit) as stop:
        runner.run(app, sample_app)
    out = capsys.readouterr()
    lines = [ln for ln in out.err.splitlines() if ln.strip()]
    assert stop.value.code == 2, (stop.value.code, out.err[-500:], out.out[-300:])
    assert len(lines) == 1 and lines[0].startswith("error:"), out.err[-800:]
    assert "Traceback" not in out.err + out.out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no runs/ folder
