"""The command line: the entry point with its fast paths (``entry``), the usage-error runner
(``runner``), the Typer app built from the registries (``app``) and what is printed (``report``).
Kept empty on purpose: ``difflab --help`` imports ``difflab.cli.entry`` alone."""
