"""Every YAML document difflab reads goes through ``load``: safe loading (no Python objects) and
a bound on how many values the document expands to. Aliases let a few lines stand for billions of
values (a "billion laughs" file); without the bound, a check or an error message that walks or
prints such a value exhausts memory. ``yaml.YAMLError`` passes through to the caller, who names
the line."""

from __future__ import annotations

from difflab.errors import ConfigError

MAX_VALUES = 1_000_000  # the largest shipped target has about 10,000 numbers


def load(text: str, source: str):
    """The document in ``text`` (``source`` names it in the error), or ConfigError if it expands to
    more than MAX_VALUES values. The count stops at the bound, so a bomb costs O(MAX_VALUES)."""
    import yaml

    doc = yaml.safe_load(text)
    stack, count = [doc], 0
    while stack:
        value = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"{source}: the YAML expands to more than {MAX_VALUES:,} values (through "
                              f"aliases: &anchor / *alias); expected a plain file")
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return doc
