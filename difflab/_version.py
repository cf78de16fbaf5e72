"""difflab's version (ground floor: the run-file writer and the entry point read it)."""

__version__ = "0.1.0"
