"""Shipped target files, installed as ``difflab.shipped`` (see pyproject.toml)."""
