"""The ``difflab`` entry point.

``difflab`` and ``difflab --help`` print the top-level help from the text below without importing
the CLI framework (Typer and its dependencies take 0.1-0.2 s to import, most of the start-up that
many short processes of a sweep would pay just to ask for help). The text is Typer's own rendering
of ``difflab --help`` at 80 columns; a test keeps the two identical. On a terminal narrower than
80 columns, and for everything else, ``difflab.cli.main`` runs.
"""

import os
import sys

TOP_HELP = """\
Usage: difflab [OPTIONS] COMMAND [ARGS]...

  difflab: a sampling lab. Samplers run on targets whose scores are known in
  closed form, and every error is measured against the truth.

Options:
  --help  Show this message and exit.

Commands:
  compare  One row per run: the parameters that differ between the runs...
  sweep    Many sample runs from one spec: a grid (and zipped lists) over...
  plot     Figures of runs against the exact target: samples over the...
  export   Write a run in another format: netCDF in ArviZ's InferenceData...
  targets  List the shipped targets (use them by name with --target).
  show     Print one run's identity, parameters and final metrics.
  sample   Run a sampler on a target and write a run file.
"""


def main() -> None:
    if sys.argv[1:] in ([], ["--help"]) and _columns() >= 80:
        sys.stdout.write(TOP_HELP)
        sys.stdout.flush()
        return
    from difflab.cli import main as cli_main

    cli_main()


def _columns() -> int:
    """The terminal width click would use (COLUMNS, else the terminal's, else 80)."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        return 80
