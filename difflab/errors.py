"""Typed errors. Library code raises these; only ``cli.py`` prints them and picks exit codes."""


class DifflabError(Exception):
    """Base class: a problem the user can fix. The CLI prints its message on one line, exit code 2."""


class ConfigError(DifflabError):
    """A malformed target file or a bad option value.

    The message has one shape: ``<file or option>: <dotted key>: <rule>, got <value>``.
    """


class RunExistsError(DifflabError):
    """The output run file exists and ``--force`` was not given."""


class RunFileError(DifflabError):
    """A file that is not a readable difflab run file."""
