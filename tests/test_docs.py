"""The README tells the truth: its CLI reference and run-file schema against the code."""

import re
from pathlib import Path

import h5py
import pytest
from typer.testing import CliRunner

from difflab.cli.app import app
from difflab.samplers import SAMPLERS
from difflab.targets import KINDS

README = Path(__file__).resolve().parents[1] / "README.md"
runner = CliRunner()


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start:end if end > 0 else None]


def _help_options(*cmd) -> set[str]:
    out = runner.invoke(app, [*cmd, "--help"], terminal_width=200).output
    return set(re.findall(r"(--[a-z][a-z-]+)", out)) - {"--help"}


def _sections_of(name: str) -> list[str]:
    """The CLI reference's subsections documenting ``difflab sample NAME``: Common options, Schedules
    where the command has every option that section lists (the diffusion samplers'), and the one
    whose heading names it (a sampler with none fails)."""
    sec = _section("CLI reference")
    own = [ln for ln in sec.splitlines() if ln.startswith("### ") and f"`difflab sample {name}`" in ln]
    assert own, f"the README's CLI reference has no '### `difflab sample {name}`' section"
    shared = set(re.findall(r"`(--[a-z][a-z-]+)`", _subsection(sec, "### Schedules")))
    flags = {o.flag for o in SAMPLERS[name].all_options}
    return ["### Common options", *(["### Schedules"] if shared <= flags else []), own[0]]


BUILTIN = [name for name in SAMPLERS if SAMPLERS.is_builtin(name)]


def _subsection(sec: str, title: str) -> str:
    start = sec.index(title)
    end = sec.find("\n### ", start + 4)
    return sec[start:end if end > 0 else None]


@pytest.mark.parametrize("sampler", BUILTIN)
def test_cli_reference_lists_exactly_each_samplers_options(sampler):
    sec = _section("CLI reference")
    text = "\n".join(_subsection(sec, t) for t in _sections_of(sampler))
    lines = [ln for ln in text.splitlines() if not (sampler == "ula" and "(mala only)" in ln)]
    doc = set(re.findall(r"`(--[a-z][a-z-]+)`", "\n".join(lines)))
    code = _help_options("sample", sampler)
    assert len(code) >= 10 and doc == code


def test_cli_reference_lists_exactly_the_compare_options():
    sec = _section("CLI reference")
    start = sec.index("### `difflab compare")
    compare = sec[start:sec.index("\n### ", start + 4)]
    assert set(re.findall(r"`(--[a-z][a-z-]+)", compare)) == _help_options("compare")


@pytest.mark.parametrize("command, heading", [("plot", "### `difflab plot"), ("sweep", "### `difflab sweep"),
                                              ("export", "### `difflab export")])
def test_cli_reference_lists_exactly_the_options_of(command, heading):
    sec = _section("CLI reference")
    start = sec.index(heading)
    rows = [ln for ln in sec[start:sec.index("\n### ", start + 4)].splitlines() if ln.startswith("| `--")]
    assert set(re.findall(r"`(--[a-z][a-z-]+)", "\n".join(rows))) == _help_options(command)


def _run(tmp_path_factory, *args):
    out = tmp_path_factory.mktemp("doc") / "r.h5"
    r = runner.invoke(app, ["sample", *args, "-n", "50", "--steps", "20", "-q", "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    return _run(tmp_path_factory, "mala")


# Runs beyond each sampler's default one: options that add parameters, series or summary keys.
VARIANTS = (["uld", "-t", "gaussian"], ["ddpm", "-t", "gaussian"], ["pflow", "-t", "gaussian"],
            ["pflow", "--schedule", "ve"], ["sde", "-t", "gaussian"],
            ["ddpm", "-t", "bimodal1d", "--early-stop", "0.01", "--steps", "20"],
            ["pflow", "--likelihood", "--likelihood-points", "5", "--steps", "5"],
            ["localization", "-t", "gaussian"], ["discrete", "--noise", "uniform", "-t", "xor3"],
            ["ddpm", "-t", "gmm-tilted", "--reward-guidance", "naive"],
            ["ddpm", "-t", "gmm-classes", "--guidance", "cfg", "--class", "right"],
            ["ksampler", "-t", "gaussian", "--solver", "unipc", "--steps", "5"],
            ["ksampler", "--solver", "heun", "--s-churn", "1", "--s-tmax", "10", "--steps", "5"],
            ["ksampler", "--solver", "dpmpp-3m-sde", "--steps", "5"])


@pytest.fixture(scope="module")
def all_runs(tmp_path_factory):
    """One run of every registered sampler on its default target, and the variants."""
    return [_run(tmp_path_factory, *a) for a in ([[name] for name in BUILTIN] + list(VARIANTS))]


def test_schema_root_attributes_match(run_file):
    row = next(ln for ln in _section("Run-file schema").splitlines() if ln.startswith("| `/` attributes"))
    doc = set(re.findall(r"`([a-z_]+)`", row)) - {"complete", "diverged", "interrupted"}
    with h5py.File(run_file) as f:
        assert doc == set(f.attrs)


def test_schema_paths_and_params_match(run_file):
    sec = _section("Run-file schema")
    with h5py.File(run_file) as f:
        for path in ("/samples", "/trajectory/positions", "/trajectory/step", "/metrics/step",
                     "/per_step/step", "/particle", "/coordinate", "/summary/ess", "/summary/split_rhat"):
            assert f"`{path}" in sec and path in f, path
        for key in ("target_yaml", "target_source", "params_json"):
            assert key in f["config"].attrs and f"`{key}`" in sec


def test_metric_table_names_every_summary_metric(run_file):
    sec = _section("Metrics")
    with h5py.File(run_file) as f:
        names = {k for k in f["summary"].attrs if not k.startswith("floor_") and k != "step_size"}
    for name in names:
        assert f"`{name}`" in sec, name


def test_schema_lists_every_samplers_params_and_series(all_runs):
    sec = _section("Run-file schema")
    params_row = next(ln for ln in sec.splitlines() if ln.startswith("| `/config/params`"))
    documented = set(re.findall(r"`([a-z_]+)`", params_row.split("|")[2]))
    series_row = next(ln for ln in sec.splitlines() if ln.startswith("| `/metrics/<name>`"))
    documented_series = set(re.findall(r"`([a-z_0-9]+)`", series_row.split("|")[2]))
    seen, seen_series = set(), set()
    for path in all_runs:
        with h5py.File(path) as f:
            seen |= set(f["config/params"].attrs)
            seen_series |= set(f["metrics"]) - {"step", "per_step"}
    assert seen <= documented and seen_series == documented_series
    assert documented - seen <= {"normal", "target", "prior", "zero", "uniform", "edm", "flow"}  # values, not keys


def test_metric_table_names_every_summary_metric_of_every_sampler(all_runs):
    sec = _section("Metrics") + _section("Error decomposition")
    for path in all_runs:
        with h5py.File(path) as f:
            for name in f["summary"].attrs:
                if name.startswith("tilted_floor_") or name.startswith("floor_") or name == "step_size":
                    continue
                if name.startswith("tilted_") and name != "tilted_acceptance":  # tilted_<metric>
                    assert "`tilted_<metric>`" in sec and f"`{name.removeprefix('tilted_')}`" in sec, name
                else:
                    assert f"`{name}`" in sec, name


@pytest.mark.system
def test_the_python_api_walkthrough_runs(tmp_path, monkeypatch):
    """The README's Python API block, executed as a newcomer would paste it."""
    text = README.read_text()
    start = text.index("## Python API")
    block = text[text.index("```python\n", start) + 10:text.index("```\n", text.index("```python\n", start) + 10)]
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(block, "README.md (Python API)", "exec"), namespace)
    assert namespace["run"].status == "complete" and len(namespace["rows"]) == 3
    assert list(namespace["frame"].columns)[:1] == ["run"]


def test_the_target_reference_documents_every_kind_and_key():
    """Every registered target kind has a YAML example (``kind: NAME``) in the Target YAML
    reference, and each of its keys appears there."""
    sec = _section("Target YAML reference")
    for name in KINDS:
        assert re.search(rf"^kind: {re.escape(name)}\b", sec, re.MULTILINE), name
        for key in KINDS[name].keys:
            assert re.search(rf"(`{key}\b|^\s*-?\s*{key}:|[{{ ]{key}[:,}}])", sec, re.MULTILINE), (name, key)


def test_the_docs_checks_can_fail():
    """Negative controls: an undocumented sampler and an undocumented kind key are caught."""
    with pytest.raises(AssertionError, match="no '### `difflab sample nosuch`' section"):
        _sections_of("nosuch")
    assert not re.search(r"^kind: nosuch\b", _section("Target YAML reference"), re.MULTILINE)
