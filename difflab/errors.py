"""Typed errors. Library code raises these; only ``cli.py`` prints them and picks exit codes."""


class DifflabError(Exception):
    """Base class: a problem the user can fix. The CLI prints its message on one line, exit code 2."""


class ConfigError(DifflabError):
    """A malformed target file or a bad option value.

    The message has one shape: ``<file or option>: <dotted key>: <rule>, got <value>``.
    """


class PluginError(DifflabError):
    """A plug-in's sampler or score broke its contract while running (raised, or returned the wrong
    shape): one line naming it; nothing is written."""


class RunExistsError(DifflabError):
    """The output run file exists and ``--force`` was not given."""


class RunFileError(DifflabError):
    """A file that is not a readable difflab run file."""


def suggest(word, options) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``options`` to ``word``, or ''."""
    import difflib

    close = difflib.get_close_matches(str(word), sorted(map(str, options)), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
