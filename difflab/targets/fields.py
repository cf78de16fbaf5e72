"""Validating a target file's mapping: the helpers every target family's ``parse`` uses, so every
family's errors have one shape: ``FILE: dotted.key: rule, got VALUE`` (a ConfigError).

``where = Where(source)``; ``where.fail(key, rule, value)`` makes the error; ``number``,
``integer``, ``vector``, ``covariance``, ``mapping``, ``require`` and ``check_keys`` read one key
each (PyYAML's strings such as ``1e-3`` are read as numbers, booleans are refused).
"""

from __future__ import annotations

import math
import re
import reprlib
from typing import Any

from difflab.errors import ConfigError
from difflab.errors import suggest as _suggest

FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
MAX_MAGNITUDE = 1e100  # target numbers beyond it overflow float64 once squared or multiplied
MAX_COV_NUMBERS = 10_000_000  # components x dim^2: the covariances, about 80 MB (and their eigenbases)


class Where:
    """Where we are: the file (``source``), for error messages."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, rule: str, got: Any = None, *, show_got: bool = True) -> ConfigError:
        where = f"{self.source}: {key}: " if key else f"{self.source}: "
        tail = f", got {show(got)}" if show_got else ""
        return ConfigError(f"{where}{rule}{tail}")


def show(v: Any) -> str:
    """A short, bounded rendering of a value for a message: a few items of a few levels, never the
    whole of a huge value (nor the decimal digits of a huge integer)."""
    s = _SHORT.repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


class _ShortRepr(reprlib.Repr):
    def repr_int(self, x, level):
        if x.bit_length() > 128:
            return f"<an integer of about {int(x.bit_length() * 0.30103) + 1} digits>"
        return repr(x)


_SHORT = _ShortRepr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 3, 6, 6, 60, 60


def check_keys(ctx: Where, mapping: dict, allowed: set, prefix: str) -> None:
    for key in mapping:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ctx.fail(
                where,
                f"unknown key{_suggest(key, allowed)}; expected one of {', '.join(sorted(allowed))}",
                show_got=False,
            )


def number(ctx: Where, key: str, v: Any) -> float:
    """A finite float. Accepts YAML numbers and numeric strings ('1e-3'); rejects booleans."""
    if isinstance(v, bool):
        raise ctx.fail(key, "expected a number", v)
    if isinstance(v, str) and FLOAT_RE.match(v.strip()):
        v = float(v)
    if not isinstance(v, (int, float)):
        raise ctx.fail(key, "expected a number", v)
    try:
        v = float(v)
    except OverflowError:
        raise ctx.fail(key, f"must be at most {MAX_MAGNITUDE:g} in size", v) from None
    if not math.isfinite(v):
        raise ctx.fail(key, "must be finite", v)
    if abs(v) > MAX_MAGNITUDE:
        raise ctx.fail(key, f"must be at most {MAX_MAGNITUDE:g} in size (float64 overflows once such values "
                       "are squared or multiplied)", v)
    return v


def integer(ctx: Where, key: str, v: Any, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ctx.fail(key, "expected an integer", v)
    if v < minimum:
        raise ctx.fail(key, f"must be >= {minimum}", v)
    return v


def vector(ctx: Where, key: str, v: Any) -> list[float]:
    if isinstance(v, (int, float, str)) and not isinstance(v, bool):
        return [number(ctx, key, v)]
    if not isinstance(v, list) or not v:
        raise ctx.fail(key, "expected a non-empty list of numbers", v)
    return [number(ctx, f"{key}[{i}]", x) for i, x in enumerate(v)]


def covariance(ctx: Where, key: str, v: Any, d: int, positive: bool = True):
    """A scalar (isotropic), a list of d numbers (diagonal) or a d x d symmetric PD matrix
    (with ``positive=False``: any symmetric matrix)."""
    import numpy as np

    if isinstance(v, list) and v and all(isinstance(r, list) for r in v):
        if len(v) != d or any(len(r) != d for r in v):
            shape = f"{len(v)}x{'/'.join(str(len(r)) for r in v)}"
            raise ctx.fail(key, f"expected a {d}x{d} matrix to match the mean's dimension {d}", shape)
        m = np.array([[number(ctx, f"{key}[{i}][{j}]", x) for j, x in enumerate(r)] for i, r in enumerate(v)])
    elif isinstance(v, list):
        diag = vector(ctx, key, v)
        if len(diag) != d:
            raise ctx.fail(key, f"expected {d} diagonal entries to match the mean's dimension {d}", len(diag))
        m = np.diag(diag)
    else:
        if v is None:
            raise ctx.fail(key, "expected a scalar, a list (diagonal) or a matrix", v)
        m = number(ctx, key, v) * np.eye(d)
    scale = float(np.max(np.abs(m)))
    if not np.allclose(m, m.T, rtol=0.0, atol=1e-10 * max(scale, 1e-300)):
        raise ctx.fail(key, "must be symmetric", m.tolist())
    lam = np.linalg.eigvalsh(m)
    if positive and lam[0] <= 1e-12 * max(scale, 1e-300):
        raise ctx.fail(key, f"must be positive definite, got smallest eigenvalue {lam[0]:.3g}", show_got=False)
    return m


def normalised_weights(ctx: Where, raw: list[tuple[str, Any]]):
    ws = []
    for key, v in raw:
        w = number(ctx, key, v)
        if w < 0:
            raise ctx.fail(key, "must be >= 0", w)
        ws.append(w)
    total = sum(ws)
    if total <= 0:
        raise ctx.fail(raw[0][0].split("[")[0] if raw else "components", "weights must have a positive sum", total)
    return [w / total for w in ws]


def require(ctx: Where, mapping: dict, key: str, prefix: str) -> Any:
    if key not in mapping:
        where = f"{prefix}.{key}" if prefix else key
        raise ctx.fail(where, "missing required key", show_got=False)
    return mapping[key]


def mapping(ctx: Where, key: str, v: Any) -> dict:
    if not isinstance(v, dict):
        raise ctx.fail(key, "expected a mapping", v)
    return v


def check_size(ctx: Where, key: str, k: int, d: int) -> None:
    """Refuse a target whose covariances (k of d x d) would be too large, before building any."""
    if k * d * d > MAX_COV_NUMBERS:
        raise ctx.fail(key, f"{k} component(s) in {d} dimensions need {k * d * d:,} covariance entries; difflab "
                       f"holds at most {MAX_COV_NUMBERS:,}", show_got=False)
