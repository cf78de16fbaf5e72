"""Settings of a ``difflab sample`` run from outside its flags: ``--set``, ``--target-set``, ``--spec``
and the sweep spec all go through here, so they share one vocabulary and one set of errors.

Keys are the ``difflab sample <sampler>`` options with ``_`` for ``-`` (``step_size``, ``steps``,
``seed``, ``target``, ``class``...), typed by the sampler's registry entry (``difflab.contracts``). Target overrides are
dotted paths into the target YAML (``ring.radius``, ``components.0.mean``, ``tilt.lambda``),
applied to the file's mapping before it is validated, so every rule of the target reference holds.

Precedence for one run: command-line flags > ``--set`` > ``--spec`` file > defaults; a flag and a
``--set`` of the same key disagreeing is an error.
"""

from __future__ import annotations

import re
from typing import Any

from difflab import yamlio
from difflab.contracts import (
    OUTPUT_OPTIONS as NOT_SETTABLE,  # the output name, overwriting, printing
)
from difflab.errors import ConfigError, suggest


def options_of(sampler: str) -> dict:
    """{key: (default, type)} of the settable options of ``difflab sample <sampler>``."""
    from difflab.samplers import entry_of

    return {o.name: (o.default, o.typ) for o in entry_of(sampler).all_options if o.name not in NOT_SETTABLE}


def coerce(src: str, key: str, value, typ):
    """``value`` (a YAML scalar) as the option's type, or a ConfigError naming ``src`` and ``key``."""
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{src}: {key}: expected true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{src}: {key}: expected an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{src}: {key}: expected a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{src}: {key}: expected a number a float can hold, got an integer of "
                              f"{value.bit_length()} bits") from None
    if isinstance(value, (dict, list)) or value is None:
        raise ConfigError(f"{src}: {key}: expected a single value, got {value!r}")
    return str(value)


def check_key(src: str, key: str, options: dict, sampler: str) -> None:
    if key in NOT_SETTABLE:
        raise ConfigError(f"{src}: {key}: not settable here; give --{key} on the command line")
    if key not in options:
        raise ConfigError(f"{src}: {key}: not an option of difflab sample {sampler}{suggest(key, options)}; "
                          f"expected one of {', '.join(options)}")


def _yaml_value(src: str, text: str):
    import yaml

    try:
        return yamlio.load(text, src) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{src}: cannot read the value {text!r}: {getattr(exc, 'problem', None) or exc}") from None


def parse_assignment(flag: str, text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key, value); the value read as YAML (``0.1``, ``true``, ``[1, 2]``, ``heun``)."""
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise ConfigError(f"{flag} {text!r}: expected KEY=VALUE")
    return key, _yaml_value(f"{flag} {key}", value)


def parse_sets(items: list[str], options: dict, sampler: str) -> dict:
    """``--set KEY=VALUE`` items -> {key: typed value} (a key given twice must agree)."""
    out = {}
    for item in items:
        key, value = parse_assignment("--set", item)
        key = key.replace("-", "_")
        check_key("--set", key, options, sampler)
        value = coerce("--set", key, value, options[key][1])
        if key in out and out[key] != value:
            raise ConfigError(f"--set {key}: given twice with different values ({out[key]!r}, {value!r})")
        out[key] = value
    return out


def parse_target_sets(flag: str, items) -> tuple:
    """``--target-set PATH=VALUE`` items (or (path, value) pairs) -> ((path, value), ...), last wins."""
    out = {}
    for item in items:
        path, value = parse_assignment(flag, item) if isinstance(item, str) else item
        path = re.sub(r"\[(-?\d+)\]", r".\1", str(path))  # components[1].mean == components.1.mean
        if any(not part for part in str(path).split(".")):
            raise ConfigError(f"{flag} {path!r}: expected a dotted path into the target YAML, e.g. ring.radius")
        out[str(path)] = value
    return tuple(out.items())


SPEC_TARGET_KEY = "target_set"


def read_run_spec(path: str) -> tuple[str | None, dict, tuple]:
    """A run spec file: (sampler or None, {key: raw value}, target sets).

    The file is a mapping of ``difflab sample`` options (``step_size: 0.05``), optionally
    ``sampler: mala`` and ``target_set: {ring.radius: 6}``."""
    import yaml

    text = yamlio.read(path, "the --spec file")
    try:
        doc = yamlio.load(text, path)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML syntax error: {getattr(exc, 'problem', None) or exc}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, got a {type(doc).__name__}")
    doc = {str(k).replace("-", "_"): v for k, v in doc.items()}
    sampler = doc.pop("sampler", None)
    if sampler is not None and not isinstance(sampler, str):
        raise ConfigError(f"{path}: sampler: expected a sampler name, got {sampler!r}")
    tsets = doc.pop(SPEC_TARGET_KEY, None) or {}
    if not isinstance(tsets, dict):
        raise ConfigError(f"{path}: {SPEC_TARGET_KEY}: expected a mapping of dotted path: value, got {tsets!r}")
    return sampler, doc, parse_target_sets(f"{path}: {SPEC_TARGET_KEY}", tsets.items())


def merge(sampler: str, options: dict, *, given: dict, spec_path: str | None, sets: list[str],
          target_sets: list[str]) -> tuple[dict, tuple]:
    """Every option's value for one run, by precedence: flags given on the command line > ``--set`` >
    the ``--spec`` file > defaults. ``given``: {key: value} of the flags the user typed.
    Returns ({key: value} from the spec and ``--set`` for the options not typed as flags, target sets)."""
    out, tsets = {}, ()
    if spec_path:
        spec_sampler, raw, tsets = read_run_spec(spec_path)
        if spec_sampler is not None and spec_sampler != sampler:
            raise ConfigError(f"{spec_path}: sampler: the spec is for '{spec_sampler}', not '{sampler}'")
        for key, value in raw.items():
            check_key(spec_path, key, options, sampler)
            out[key] = coerce(spec_path, key, value, options[key][1])
    from_set = parse_sets(sets, options, sampler)
    for key, value in from_set.items():
        if key in given and given[key] != value:
            raise ConfigError(f"--set {key}={value!r} disagrees with --{key.replace('_', '-')} {given[key]!r}; "
                              f"give one")
    out.update(from_set)
    for key in given:
        out.pop(key, None)
    tsets = parse_target_sets("--target-set", [*tsets, *target_sets])
    return out, tsets


def apply(sampler: str, args: dict, typed) -> dict:
    """A command's options by key with --spec (``args["spec"]``) and --set (``args["set"]``)
    applied under the flags the user typed (``typed(key)``), and ``target_set`` resolved."""
    options = options_of(sampler)
    given = {key: args[key] for key in args if key in options and typed(key)}
    merged, target_sets = merge(sampler, options, given=given, spec_path=args["spec"], sets=args["set"] or [],
                                target_sets=args["target_set"] or [])
    return {k: v for k, v in args.items() if k not in ("set", "spec")} | merged | {"target_set": target_sets}
