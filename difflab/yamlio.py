"""Every YAML document difflab reads goes through ``load``: safe loading (no Python objects) and
a bound on how many values the document expands to. Aliases let a few lines stand for billions of
values (a "billion laughs" file); without the bound, a check or an error message that walks or
prints such a value exhausts memory. ``yaml.YAMLError`` passes through to the caller, who names
the line."""

from __future__ import annotations

from difflab.errors import ConfigError

MAX_BYTES = 64 * 2**20  # a YAML file difflab reads: far above any real target, spec or sweep
MAX_VALUES = 1_000_000  # the largest shipped target has about 10,000 numbers
MAX_DEPTH = 50  # a target nests four levels deep (components: - cov: [[...]])


def load(text: str, source: str):
    """The document in ``text`` (``source`` names it in the error), or ConfigError if it expands to
    more than MAX_VALUES values or nests deeper than MAX_DEPTH. The walk stops at the bounds, so a
    bomb costs O(MAX_VALUES)."""
    import yaml

    try:
        doc = yaml.load(text, Loader=_loader(text))
    except RecursionError:  # the parser itself recurses once per level
        raise ConfigError(f"{source}: the YAML nests deeper than {MAX_DEPTH} levels; expected a plain file") from None
    except ValueError:  # PyYAML's int() of an integer beyond Python's 4,300-digit limit
        raise ConfigError(f"{source}: a number with more than 4,300 digits; expected a number a float can hold "
                          f"(at most 1e100 in size)") from None
    stack, count = [(doc, 0)], 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"{source}: the YAML expands to more than {MAX_VALUES:,} values (through "
                              f"aliases: &anchor / *alias); expected a plain file")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{source}: the YAML nests deeper than {MAX_DEPTH} levels; expected a plain file")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in (*value.keys(), *value.values()))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return doc


C_DEPTH = 2_000  # what libyaml's (recursive, C) composer is given at most: far inside its C stack


def _loader(text: str):
    """libyaml's safe loader (~50x faster than PyYAML's Python one) when the document cannot nest
    deeper than C_DEPTH, else the Python loader (whose recursion ends in a RecursionError, caught,
    where the C composer would overflow the C stack). The bound: a value's depth is at most the
    largest indentation plus sequence dashes of a line, plus the deepest flow brackets ([, {)."""
    import re

    import yaml

    if not yaml.__with_libyaml__:  # PyYAML built without libyaml
        return yaml.SafeLoader
    fast = yaml.CSafeLoader
    block = max((len(line) - len(line.lstrip(" -?")) for line in text.splitlines()), default=0)
    if block > C_DEPTH:
        return yaml.SafeLoader
    # Flow depth: brackets outside quoted strings and comments, closes never below zero (in block
    # context a plain scalar may hold a bracket; in flow context none can): an upper bound.
    bare = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\']|\'\')*\'|(?:^|(?<=\s))#[^\n]*', "", text)
    depth = deepest = 0
    for bracket in re.findall(r"[\[\]{}]", bare):
        depth = depth + 1 if bracket in "[{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
        if deepest + block > C_DEPTH:
            return yaml.SafeLoader
    return fast


def read(path, what: str) -> str:
    """The text of a YAML file (``what`` names it in errors: "the target file", "--spec"), refused
    in one line if it is not a regular file of at most MAX_BYTES in UTF-8 (checked before reading:
    a huge or endless file is never loaded)."""
    import os
    import stat

    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: {what} is not a regular file")
        if info.st_size > MAX_BYTES:
            raise ConfigError(f"{path}: {what} is {info.st_size:,} bytes; expected at most {MAX_BYTES:,}")
        with open(path, encoding="utf-8") as fh:
            return fh.read(MAX_BYTES + 1)[:MAX_BYTES]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from None
