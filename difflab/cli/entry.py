"""The ``difflab`` entry point.

``difflab`` and ``difflab --help`` print the top-level help from the text below without importing
the CLI framework (Typer and its dependencies take 0.1-0.2 s to import, most of the start-up that
many short processes of a sweep would pay just to ask for help). The text is Typer's own rendering
of ``difflab --help`` at 80 columns; a test keeps the two identical. On a terminal narrower than
80 columns, and for everything else, ``difflab.cli.app.main`` runs, through ``difflab.cli.runner.run``.
"""

import os
import sys

from difflab.cli import runner

TOP_HELP = """\
Usage: difflab [OPTIONS] COMMAND [ARGS]...

  difflab: a sampling lab. Samplers run on targets whose scores are known in
  closed form, and every error is measured against the truth.

Options:
  --version             Print difflab's version and exit.
  --install-completion  Install completion for the current shell.
  --show-completion     Show completion for the current shell, to copy it or
                        customize the installation.
  --help                Show this message and exit.

Commands:
  compare  One row per run: the parameters that differ between the runs...
  sweep    Many sample runs from one spec: a grid (and zipped lists) over...
  plot     Figures of runs against the exact target: samples over the...
  export   Write a run in another format: netCDF in ArviZ's InferenceData...
  targets  List the shipped targets (use them by name with --target).
  cache    Show the exact-draw floor cache (its folder, entries and...
  show     Print one run's identity, parameters and final metrics.
  sample   Run a sampler on a target and write a run file.
"""


def main() -> None:
    argv = sys.argv[1:]
    completing = "_DIFFLAB_COMPLETE" in os.environ  # the shell asks for completions: the CLI answers
    if argv in ([], ["--help"]) and _columns() >= 80 and not completing:
        sys.stdout.write(TOP_HELP)
        sys.stdout.flush()
        return
    if argv == ["--version"]:  # as the CLI's --version prints it, without importing the CLI
        return runner.print_version()
    argv = _load_plugins(argv)
    sys.argv[1:] = argv
    if argv and argv[0] != "sample":
        runner.ONLY = ""
    elif len(argv) > 1:
        runner.ONLY = argv[1]
    from difflab.cli.app import main as cli_main

    cli_main()


def _load_plugins(argv: list) -> list:
    """Load every ``--plugin REF`` (anywhere on the command line, repeatable) before the commands
    are built, so its samplers are commands like the built-in ones; the rest of argv is returned."""
    rest, refs, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--plugin" and i + 1 < len(argv):
            refs.append(argv[i + 1])
            i += 2
            continue
        if argv[i].startswith("--plugin="):
            refs.append(argv[i].split("=", 1)[1])
        else:
            rest.append(argv[i])
        i += 1
    if refs:
        from difflab.errors import DifflabError
        from difflab.plugins import load_plugin

        try:
            for ref in refs:
                load_plugin(ref)
        except DifflabError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
    return rest


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
