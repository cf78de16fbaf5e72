"""Resolving ``--target``: a path or a shipped name (with ``--target-set`` overrides) -> a
validated target file (``difflab.targets.parse_target``) -> its target (``build_target``)."""

from __future__ import annotations

import contextlib
import contextvars
import json
from importlib import resources
from pathlib import Path
from typing import Any

from difflab import yamlio
from difflab.contracts.target import TargetFile
from difflab.errors import ConfigError
from difflab.errors import suggest as _suggest
from difflab.targets import build_target, parse_target

# Set while a target's YAML from a run file is parsed (plot): a run file names no file to read, so
# a reference there must be inline or a shipped name (a crafted run file cannot make difflab read a
# local file, and a moved or edited file cannot change what a run is drawn against).
_SEALED = contextvars.ContextVar("difflab_sealed_targets", default=False)


@contextlib.contextmanager
def sealed():
    """Parse targets without reading any file (a run file's stored target YAML)."""
    token = _SEALED.set(True)
    try:
        yield
    finally:
        _SEALED.reset(token)


def shipped_targets() -> dict[str, str]:
    """Names of the shipped targets -> their YAML text."""
    files = resources.files("difflab.shipped")
    return {
        p.name[: -len(".yaml")]: p.read_text(encoding="utf-8")
        for p in sorted(files.iterdir(), key=lambda p: p.name.removesuffix(".yaml"))
        if p.name.endswith(".yaml")
    }


def read_target_spec(ref, overrides: tuple = ()) -> TargetFile:
    """Resolve ``--target``: first as a path, then as a shipped name with or without '.yaml'.

    ``overrides``: ((dotted path, value), ...) from ``--target-set``, applied to the file's mapping
    before validation; the spec's ``text`` is then the effective YAML (what the run used)."""
    if isinstance(ref, TargetFile):  # already validated (a target object's file)
        if not overrides:
            return ref
        return parse_target(*_overridden(ref.text, ref.source, ref.name, overrides), ref.name)
    if isinstance(ref, dict) or (isinstance(ref, str) and "\n" in ref.strip()):  # the YAML itself (Python API)
        import yaml

        text = ref if isinstance(ref, str) else yaml.safe_dump(ref, sort_keys=False, default_flow_style=None)
        source = "<mapping>" if isinstance(ref, dict) else "<string>"
        if overrides:
            text, source = _overridden(text, source, "target", overrides)
        return parse_target(text, source, "target")
    path = Path(ref)
    if _SEALED.get() and ref.removesuffix(".yaml") not in shipped_targets():
        raise ConfigError(f"'{ref}': a target stored in a run file names no file (only shipped targets and "
                          f"inline mappings); written by an older difflab or not by difflab")
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except OSError as exc:  # e.g. a name longer than the file system allows: not a path, maybe a name
        is_file = is_dir = False
        if len(ref) > 255 or "/" in ref:
            raise ConfigError(f"--target: cannot use '{ref[:60]}...': {exc.strerror or exc}") from None
    if is_file:
        text = yamlio.read(path, "the target file")
        source, name = str(ref), path.stem
    elif is_dir:
        raise ConfigError(f"--target: '{ref}' is a folder; expected a target YAML file or a shipped name")
    else:
        shipped = shipped_targets()
        name = ref.removesuffix(".yaml")
        if name not in shipped:
            raise ConfigError(
                f"--target: no file '{ref}' and no shipped target '{name}'{_suggest(name, shipped)}; "
                f"shipped: {', '.join(shipped)}"
            )
        text, source = shipped[name], f"{name}.yaml (shipped)"
    if overrides:
        text, source = _overridden(text, source, name, overrides)
    return parse_target(text, source, name)


def _overridden(text: str, source: str, name: str, overrides: tuple) -> tuple[str, str]:
    """(effective YAML text, source naming the overrides) of a target file with --target-set."""
    import yaml

    spec = parse_target(text, source, name)  # the file itself must be valid: its errors name the file
    # its effective text: files it names (a score's reference) are inline there, read once, from its folder
    doc = apply_target_sets(yamlio.load(spec.text, source), overrides, source)
    shown = " ".join(f"{k}={json.dumps(v)}" for k, v in overrides)
    source = f"{source} with --target-set {shown}"
    return f"# {source}\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None), source


def apply_target_sets(doc: Any, sets: tuple, source: str) -> Any:
    """The target mapping with each (dotted path, value) set; lists are indexed by number.

    Intermediate mappings that do not exist are created (``tilt.lambda`` on an untilted target):
    the target's own validation then names whatever is missing or unknown, with a suggestion."""
    import copy

    doc = copy.deepcopy(doc)
    for path, value in sets:
        parts = path.split(".")
        node = doc
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                    raise ConfigError(f"--target-set {path}: {source}: {'.'.join(parts[:depth]) or 'the file'} "
                                      f"is a list of {len(node)}; expected an index 0..{len(node) - 1}, got {part!r}")
                idx = int(part)
            elif isinstance(node, dict):
                idx = part
                if not last and idx not in node:
                    node[idx] = {}
            else:
                raise ConfigError(f"--target-set {path}: {source}: {'.'.join(parts[:depth])} is a "
                                  f"{type(node).__name__} ({node!r}), not a mapping or list")
            if last:
                node[idx] = value
            else:
                node = node[idx]
    return doc


def load_target(ref: str, overrides: tuple = ()):
    """``(spec, target)`` for a ``--target`` value (and ``--target-set`` overrides)."""
    spec = read_target_spec(ref, overrides)
    return spec, build_target(spec)
