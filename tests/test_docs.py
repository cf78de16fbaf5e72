"""The README tells the truth: its CLI reference and run-file schema against the code."""

import re
from pathlib import Path

import h5py
import pytest
from typer.testing import CliRunner

from difflab.cli import app

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


def test_cli_reference_lists_exactly_the_sample_options():
    doc = set(re.findall(r"`(--[a-z][a-z-]+)`", _section("CLI reference").split("### `difflab compare")[0]))
    code = _help_options("sample", "ula") | _help_options("sample", "mala")
    assert len(code) >= 14 and doc == code


def test_cli_reference_lists_exactly_the_compare_options():
    sec = _section("CLI reference")
    compare = sec[sec.index("### `difflab compare"):sec.index("### `difflab targets")]
    assert set(re.findall(r"`(--[a-z][a-z-]+)", compare)) == _help_options("compare")


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("doc") / "r.h5"
    r = runner.invoke(app, ["sample", "mala", "-n", "50", "--steps", "20", "-q", "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_schema_root_attributes_match(run_file):
    row = next(ln for ln in _section("Run-file schema").splitlines() if ln.startswith("| `/` attributes"))
    doc = set(re.findall(r"`([a-z_]+)`", row)) - {"complete", "diverged", "interrupted"}
    with h5py.File(run_file) as f:
        assert doc == set(f.attrs)


def test_schema_paths_and_params_match(run_file):
    sec = _section("Run-file schema")
    with h5py.File(run_file) as f:
        for path in ("/samples", "/trajectory/positions", "/trajectory/step", "/metrics/step",
                     "/metrics/per_step/step", "/summary/ess", "/summary/split_rhat"):
            assert f"`{path}" in sec and path in f, path
        params_row = next(ln for ln in sec.splitlines() if ln.startswith("| `/config/params`"))
        assert set(re.findall(r"`([a-z_]+)`", params_row.split("|")[2])) == set(f["config/params"].attrs)
        for key in ("target_yaml", "target_source", "params_json"):
            assert key in f["config"].attrs and f"`{key}`" in sec
        series = next(ln for ln in sec.splitlines() if ln.startswith("| `/metrics/<name>`"))
        assert set(re.findall(r"`([a-z_0-9]+)`", series.split("|")[2])) == set(f["metrics"]) - {"step", "per_step"}


def test_metric_table_names_every_summary_metric(run_file):
    sec = _section("Metrics")
    with h5py.File(run_file) as f:
        names = {k for k in f["summary"].attrs if not k.startswith("floor_") and k != "step_size"}
    for name in names:
        assert f"`{name}`" in sec, name
