"""One floor cache for the whole test session, a fresh temporary folder, never the user's: the
session's processes (pytest-xdist workers, and the processes tests start, which inherit the
environment) share its entries (floors once per target and size per session), and it is removed
when the session ends.

Typer's test runner turns the app into a click command on every ``invoke`` (~15 ms: every sampler
command and its options), which a process of the real CLI does once. The tests' runner reuses the
command while the app's commands and groups are the same ones (a plug-in that adds a command
changes them, and gets a fresh command)."""

import os
import shutil
import tempfile

import typer.testing

_get_command = typer.testing._get_command
_COMMANDS: dict = {}


def _shape(app) -> tuple:
    """What get_command builds from: the app's callback, commands and groups, recursively."""
    callback = app.registered_callback
    return (app, callback.callback if callback else None,  # the objects themselves (compared by identity,
            tuple((c.name, c.callback) for c in app.registered_commands),  # and kept alive by the key)
            tuple((g.name, _shape(g.typer_instance)) for g in app.registered_groups))


def _cached_get_command(app):
    key = _shape(app)
    if key not in _COMMANDS:
        _COMMANDS.clear()
        _COMMANDS[key] = _get_command(app)
    return _COMMANDS[key]


typer.testing._get_command = _cached_get_command


def pytest_configure(config):
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the controller's folder, inherited
        return
    config.difflab_cache = tempfile.mkdtemp(prefix="difflab-test-cache-")
    os.environ["DIFFLAB_CACHE_DIR"] = config.difflab_cache


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput"):
        shutil.rmtree(config.difflab_cache, ignore_errors=True)


def wait_until_handling_sigterm(pid: int, timeout: float = 300.0) -> None:
    """Wait for the event, not a fixed time: until process ``pid`` has installed its SIGTERM handler
    (bit 15 of SigCgt in /proc/PID/status), which difflab's sample and sweep do right before they
    start running; a signal sent after it is handled as a user's would be."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/status") as f:
                status = f.read()
        except OSError:
            return  # the process has ended: the caller's assertions say how
        caught = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("SigCgt:")), 16)
        if caught & (1 << 14):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} did not install its SIGTERM handler within {timeout} s")
