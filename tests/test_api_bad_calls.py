"""Bad calls of the Python API, generated from the functions' signatures: every argument of
``difflab.sample``, ``load``, ``compare`` and ``load_target`` given each value of the wrong kind for
it (by its annotation: integers get floats, bools, text, lists; flags get text and numbers; paths get
numbers; ...). Every one raises ``DifflabError`` with one line naming the argument, before any work,
and writes nothing. Negative controls: numpy integers and bools are accepted (and run)."""

import inspect

import numpy as np
import pytest

import difflab
from difflab.errors import DifflabError

BAD = {  # by the kind of argument: values of the wrong kind
    "int": [2.5, "10", True, [1], {}, None],
    "int|None": [2.5, "10", True, [1]],
    "bool": ["no", "yes", 1, 0, None, [True]],
    "str|None": [5, 2.5, ["normal"], {"a": 1}],
    "dict|None": ["ring.radius=6", 5, [("a", 1)]],
    "path|None": [5, 2.5, [1], b"x", ""],
    "target": [5, 2.5, None, [1], b"x"],
    "sampler": [None, 5, 2.5, ["mala"], {"name": "mala"}, b"mala"],
    "cache": [5, None, [1], 2.5],
}


def _kind(fn, name: str, param) -> str | None:
    if name in ("sampler", "target", "cache"):
        return name
    ann = str(param.annotation)
    if name == "out":
        return "path|None"
    if name == "force":
        return "bool"
    for key, kind in (("int | None", "int|None"), ("int", "int"), ("str | None", "str|None"),
                      ("dict | None", "dict|None")):
        if ann == key:
            return kind
    return None


def sample_cases():
    sig = inspect.signature(difflab.sample)
    for name, param in sig.parameters.items():
        kind = _kind(difflab.sample, name, param)
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        assert kind is not None, f"difflab.sample({name}=...): no bad values for its annotation {param.annotation}"
        for value in BAD[kind]:
            yield name, value


CASES = list(sample_cases())


def test_the_corpus_covers_every_argument():
    names = {n for n, _ in CASES}
    assert names == set(inspect.signature(difflab.sample).parameters) - {"options"}
    assert len(CASES) >= 60


@pytest.mark.parametrize("name, value", CASES, ids=[f"{n}={v!r}" for n, v in CASES])
def test_bad_sample_arguments_raise_difflab_errors_and_write_nothing(tmp_path, name, value):
    call = {"sampler": "ula", "target": "gaussian", "particles": 20, "steps": 3, "out": tmp_path / "r.h5",
            "cache": False}
    call[name] = value
    sampler = call.pop("sampler")
    with pytest.raises(DifflabError) as info:
        difflab.sample(sampler, **call)
    message = str(info.value)
    assert "\n" not in message and len(message) < 300, message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("call", [
    lambda: difflab.load(5), lambda: difflab.load(None), lambda: difflab.load(""),
    lambda: difflab.compare("runs/a.h5"), lambda: difflab.compare(5), lambda: difflab.compare([5]),
    lambda: difflab.compare([], metrics="mmd2"), lambda: difflab.compare([], metrics=[1]),
    lambda: difflab.compare([], sort=5),
    lambda: difflab.load_target(5), lambda: difflab.load_target(None), lambda: difflab.load_target([1]),
    lambda: difflab.sample("ula", "gaussian", particles=20, steps=3, step_size="big", cache=False),
    lambda: difflab.sample("ula", "gaussian", particles=20, steps=3, step_size=[0.1], cache=False),
    lambda: difflab.sample("ula", "gaussian", particles=20, steps=3, no_such_option=1, cache=False),
])
def test_bad_calls_of_the_other_functions(call):
    with pytest.raises(DifflabError):
        call()


def test_numpy_scalars_are_accepted_and_force_must_be_a_bool(tmp_path):
    """Negative controls: np.int64 particles/steps/seed and np.float64 options run and are recorded
    as plain numbers; force="no" neither overwrites nor runs."""
    run = difflab.sample("ula", "gaussian", particles=np.int64(20), steps=np.int64(3), seed=np.int64(4),
                         step_size=np.float64(0.1), out=tmp_path / "r.h5", cache=False)
    assert run.attrs["steps_done"] == 3 and run.params["step_size"] == 0.1 and run.attrs["seed"] == 4
    before = (tmp_path / "r.h5").read_bytes()
    with pytest.raises(DifflabError, match="force: expected True or False"):
        difflab.sample("ula", "gaussian", particles=20, steps=3, seed=5, out=tmp_path / "r.h5", force="no")
    assert (tmp_path / "r.h5").read_bytes() == before
    difflab.sample("ula", "gaussian", particles=20, steps=3, seed=5, out=tmp_path / "r.h5", force=np.bool_(True),
                   cache=False)
    assert difflab.load(tmp_path / "r.h5").attrs["seed"] == 5
