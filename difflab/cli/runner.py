"""Running the Typer app: usage errors become one line and exit 2, a closed pipe ends quietly; the
version line; and which sampler commands the app builds (``ONLY``, set by the entry point before it
imports ``difflab.cli.app``: building one sampler's command imports that sampler's module alone)."""

import os
import sys

ONLY = None  # `difflab sample NAME ...`: NAME, the one sampler command the app builds; "" for another
# command (no sampler commands at all); None (all of them) for `difflab sample` itself and in tests


def print_version() -> None:
    from difflab._version import __version__

    sys.stdout.write(f"difflab {__version__}\n")
    sys.stdout.flush()


def _is(exc: BaseException, name: str) -> bool:
    """Match the CLI framework's exceptions by class name (Typer vendors click in recent versions)."""
    return any(c.__name__ == name for c in type(exc).__mro__)


def run(app, sample_app) -> None:
    """Run the Typer app. Usage errors (unknown command or option, unparsable value) become one
    line, exit 2; a closed pipe ends quietly."""
    argv = sys.argv[1:]
    samplers = sample_app.registered_commands
    # Typer turns every registered command into a click command on each call: the samplers' are not
    # built for the other commands (for `difflab sample NAME` the CLI registered NAME's alone: ONLY).
    if (not argv or argv[0] != "sample") and "_DIFFLAB_COMPLETE" not in os.environ:  # completion: all of them
        sample_app.registered_commands = []
    try:
        code = _run(app)
    except BrokenPipeError:  # e.g. `difflab compare runs/* | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    finally:
        sample_app.registered_commands = samplers
    sys.exit(code if isinstance(code, int) else 0)


def _run(app):
    import typer

    try:
        return app(standalone_mode=False)
    except Exception as exc:
        if _is(exc, "NoArgsIsHelpError"):
            typer.echo(exc.format_message())
            code = 0
        elif _is(exc, "UsageError"):
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "difflab"
            typer.echo(f"error: {where}: {exc.format_message()} (see '{where} --help')", err=True)
            code = 2
        elif _is(exc, "Exit"):
            code = exc.exit_code
        elif _is(exc, "Abort"):
            code = 130
        else:
            raise
        return code

