"""Runs -> one table: the parameters that differ between the runs, and the final metrics.

A file that is not a readable run becomes a row whose ``error`` says why; nothing here raises on
a bad file.
"""

from __future__ import annotations

import csv
import io as _io
import itertools
import json
import math
from pathlib import Path

from difflab.errors import ConfigError, RunFileError, suggest
from difflab.run.checks import fmt

# Columns shown in the table, in this order, when at least one run has them.
METRICS = (
    "exact_kl", "exact_w2", "exact_tv", "tv", "kl", "marginal_tv", "pair_tv", "jumps", "mean_error", "cov_rel_error", "w2_gaussian", "sliced_w2", "mode_tv", "mmd2",
    "energy", "w2_empirical", "ksd2", "tilted_mean_error", "tilted_sliced_w2", "class_confidence", "log_z_estimate", "log_z", "nfe",
    "acceptance_rate", "step_size", "r_hat_max", "ess_bulk_min", "ess_tail_min", "mcse_mean_max", "ess_min",
    "split_rhat_max",
)
RUN_KEYS = ("sampler", "target", "seed", "status", "steps_done")


def load_rows(paths) -> list[dict]:
    """One row per path: run identity, parameters, summary metrics (or an ``error``)."""
    from difflab.run.io import read_run

    rows = []
    for p in paths:
        try:
            rows.append(row_of(read_run(p)))
        except RunFileError as exc:
            rows.append({"run": str(p), "error": str(exc)})
    return rows


def row_of(run) -> dict:
    """A run's row: identity, parameters, summary metrics (``run`` a ``difflab.run.io.Run``)."""
    row = {"run": run.path or f"{run.attrs.get('sampler')}-{run.attrs.get('target')} (in memory)"}
    row.update({k: run.attrs.get(k) for k in RUN_KEYS})
    row["wall_time_s"] = run.attrs.get("wall_time_s")
    row["params"] = run.params
    row["summary"] = run.summary
    return row


def differing_params(rows: list[dict]) -> list[str]:
    """Parameter names (and seed, sampler, target) whose values are not the same in every run."""
    good = [r for r in rows if "error" not in r]
    names = []
    for key in ("sampler", "target", "seed"):
        if len({json.dumps(r.get(key)) for r in good}) > 1:
            names.append(key)
    keys = sorted({k for r in good for k in r["params"]})
    for k in keys:
        if len({json.dumps(r["params"].get(k)) for r in good}) > 1:
            names.append(k)
    return names


def groups(rows: list[dict]) -> list[tuple[tuple[str, str], list[dict]]]:
    """The readable runs grouped by (sampler, target), groups in order of first appearance."""
    out: dict = {}
    for r in rows:
        if "error" not in r:
            out.setdefault((r["sampler"], r["target"]), []).append(r)
    return list(out.items())


def table_params(group: list[dict]) -> list[str]:
    """The parameters compare's table shows for one sampler and target: those that vary among its
    runs (the seed included), not the output options; the one with the most distinct values first
    (the sweep's axis, e.g. solver, then steps), ties by name. The rows are sorted in this order."""
    names = [p for p in differing_params(group) if p not in ("sampler", "target", *_DERIVED)]

    def distinct(p):
        return len({json.dumps(r.get(p) if p == "seed" else r["params"].get(p)) for r in group})
    return sorted(names, key=lambda p: (-distinct(p), p))


def labels(rows: list[dict]) -> list[str]:
    """Each run's label among these runs: the parameters that differ between them (output options
    aside, and those only some of the runs have) as ``k=v, k=v`` (``step_size=0.2, seed=1``), the same words compare's columns and the
    sweep display use; the file name where nothing differs. Plot legends and panel titles use it."""
    good = [r for r in rows if "error" not in r]
    # a parameter only some of the runs have (another sampler's) says nothing more than ``sampler``
    names = [p for p in differing_params(good) if p not in _DERIVED
             and (p in RUN_KEYS or all(p in r["params"] for r in good))]
    return [(", ".join(f"{k}={fmt(_value(r, k))}" for k in names) if "error" not in r else "") or Path(r["run"]).stem
            for r in rows]


def natural_order(flat: list[dict], params: list[str]) -> list[dict]:
    """Rows sorted by the varying parameters in turn: numbers by value, then text, then missing."""
    def key(d):
        return tuple((0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else
                     (2, 0, "") if v is None else (1, 0, str(v)) for v in (d.get(p) for p in params))
    return sorted(flat, key=key)


def flatten(rows: list[dict], param_cols: list[str], metrics=None) -> tuple[list[str], list[dict]]:
    """Rows as flat dicts with the columns to show: run, status, differing params, metrics
    (``metrics``: the summary keys to show instead of the default ones; each must be in some run)."""
    if metrics:
        known = sorted({k for r in rows for k in r.get("summary", {})})
        for m in metrics:
            if m not in known:
                raise ConfigError(f"--metric: no run has a summary key '{m}'{suggest(m, known)}")
    # A metric that is also a differing parameter (step_size) is shown once, as the parameter.
    present = [m for m in (metrics or METRICS) if m not in param_cols and any(m in r.get("summary", {}) for r in rows)]
    cols = ["run", "status", "steps_done"] + param_cols + present
    flat = []
    for r in rows:
        if "error" in r:
            flat.append({"run": r["run"], "status": "unreadable", "error": r["error"]})
            continue
        d = {"run": r["run"], "status": r["status"], "steps_done": r["steps_done"]}
        for k in param_cols:
            d[k] = r[k] if k in ("sampler", "target", "seed") else r["params"].get(k)
        for m in present:
            d[m] = r["summary"].get(m)
        flat.append(d)
    return cols, flat


def sort_rows(flat: list[dict], key: str, cols: list[str]) -> list[dict]:
    if key not in cols:
        raise ConfigError(f"--sort: unknown column '{key}'; expected one of {', '.join(cols)}")

    def k(d):
        v = d.get(key)
        missing = v is None or (isinstance(v, float) and math.isnan(v))
        return (missing, 0 if missing else v)

    return sorted(flat, key=k)


def _strict(value):
    """A JSON-ready copy: non-finite floats as the strings "NaN", "Infinity", "-Infinity" (strict
    JSON has no such numbers; Python's float() reads these strings back)."""
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def to_json(rows) -> str:
    """Strict JSON (``allow_nan=False``) of every field of every run, or of any compare result."""
    return json.dumps(_strict(rows), indent=2, sort_keys=True, default=str, allow_nan=False)


def to_csv(cols: list[str], flat: list[dict]) -> str:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols + ["error"], extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for d in flat:
        w.writerow(d)
    return buf.getvalue()


# ---------------------------------------------------------------- --by PARAM --fit
# Parameters that follow from the others (defaults scaled with --steps) or only shape the output:
# they never split runs into separate series.
_DERIVED = ("save_every", "metrics_every", "trajectory_particles")


def _value(r: dict, k: str):
    return r[k] if k in ("sampler", "target", "seed") else r["params"].get(k)


def _require_metric(good: list[dict], metric: str) -> None:
    if not any(metric in r["summary"] for r in good):
        known = sorted({k for r in good for k in r["summary"]})
        raise ConfigError(f"--metric: no run has a summary key '{metric}'{suggest(metric, known)}")


def _collect(good: list[dict], metric: str, vary: str, x_of) -> dict[str, dict]:
    """{series (JSON of the other differing parameters): {x: [metric values over seeds]}}; a series
    is one setting of the differing parameters other than ``vary``, seeds and output options."""
    others = [k for k in differing_params(good) if k not in (vary, "seed", *_DERIVED)]
    series: dict[str, dict] = {}
    for r in good:
        x, y = x_of(r), r["summary"].get(metric)
        if x is None or y is None:
            continue
        key = json.dumps({k: _value(r, k) for k in others}, sort_keys=True, default=str)
        series.setdefault(key, {}).setdefault(x, []).append(float(y))
    return series


def group_by(rows: list[dict], by: str, metric: str) -> list[dict]:
    """Runs grouped by the value of parameter ``by`` within each series (a series = one setting
    of the other differing parameters, seeds excluded), the metric aggregated over seeds.

    Returns one dict per series: ``series`` (the other parameters' values), ``points`` (a list of
    {value, n, mean, sd} sorted by value; sd with ddof = 1, None for one run).
    """
    import numpy as np

    good = [r for r in rows if "error" not in r and r["status"] == "complete"]
    params = sorted({k for r in good for k in r["params"]})
    if by not in (*params, *RUN_KEYS[:3]):  # a sampler parameter, or sampler, target, seed
        raise ConfigError(f"--by: no run has a parameter '{by}'{suggest(by, params)}")
    _require_metric(good, metric)
    series = _collect(good, metric, by, lambda r: _value(r, by))
    out = []
    for key, groups in series.items():
        points = []
        for x in sorted(groups):
            ys = np.array(groups[x])
            points.append({"value": x, "n": len(ys), "mean": float(ys.mean()),
                           "sd": float(ys.std(ddof=1)) if len(ys) > 1 else None})
        out.append({"series": json.loads(key), "points": points})
    return out


def fit_slope(points: list[dict], level: float = 0.95) -> dict:
    """Least-squares slope of log(mean metric) against log(parameter) over the points with both
    positive, with a ``level`` confidence interval from Student's t on k - 2 degrees of freedom
    (k the number of points; no interval for k = 2). The slope is the convergence order when the
    metric is an error and the parameter a step size (or minus it for a step count)."""
    import numpy as np
    from scipy import stats

    pts = [(p["value"], p["mean"]) for p in points
           if isinstance(p["value"], (int, float)) and p["value"] > 0 and p["mean"] > 0]
    if len(pts) < 2:
        return {"k": len(pts), "slope": None, "ci_low": None, "ci_high": None}
    x, y = np.log(np.array(pts, dtype=np.float64)).T
    res = stats.linregress(x, y)
    out = {"k": len(pts), "slope": float(res.slope), "intercept": float(res.intercept),
           "ci_low": None, "ci_high": None}
    if len(pts) > 2:
        half = float(stats.t.ppf(0.5 + level / 2, len(pts) - 2) * res.stderr)
        out.update(ci_low=out["slope"] - half, ci_high=out["slope"] + half)
    return out


# ---------------------------------------------------------------- what kind of number a metric is
# "exact": computed from exact laws (no Monte Carlo noise); "run": an exact property of this run
# (a count, a rate, a setting), not an estimate of a target quantity; "MC": a Monte Carlo estimate
# (compare it with its floor_<metric>, the same estimate on exact draws of the same size).
_EXACT = {"exact_kl", "exact_kl_target_out", "exact_w2", "exact_tv", "log_z", "guidance_gamma", "class_weight",
          "likelihood_max_err", "likelihood_prior_max_err", "likelihood_nfe",
          # error-decomposition terms reported only where they are closed forms
          "kl_delta", "kl_path_gap", "kl_discretisation", "w2_prior", "w2_discretisation", "w2_score_error",
          "w2_early_stop"}
_RUN = {"acceptance_rate", "accepted_fraction", "nfe", "posterior_trace", "jumps", "score_mse", "smc_ess",
        "resampled", "step_size"}


def metric_kind(name: str) -> str:
    """'exact', 'run' or 'MC' for a summary key (see the README's metric table)."""
    if name in _EXACT:
        return "exact"
    if name in _RUN:
        return "run"
    return "MC"


KIND_LABEL = {"exact": "exact", "run": "of the run", "MC": "MC"}


# ---------------------------------------------------------------- --at COST / --tol T: cost ranking
def _loglog(x0, y0, x1, y1, x, inverse=False):
    """Log-log linear interpolation through (x0, y0), (x1, y1): y at x (or x at y with inverse)."""
    lx0, lx1, ly0, ly1 = map(math.log, (x0, x1, y0, y1))
    if inverse:
        return math.exp(lx0 + (math.log(x) - ly0) * (lx1 - lx0) / (ly1 - ly0)) if ly1 != ly0 else x0
    return math.exp(ly0 + (math.log(x) - lx0) * (ly1 - ly0) / (lx1 - lx0)) if lx1 != lx0 else y0


def cost_rank(rows: list[dict], metric: str, *, cost: str = "nfe", vary: str = "steps", at: float | None = None,
              tol: float | None = None) -> dict:
    """Series ranked by ``metric`` at a fixed ``cost`` and by the cost to reach a tolerance.

    A series is one setting of the differing parameters other than ``vary`` (the knob that sets the
    cost, default steps), seeds and output options. Within a series the metric is averaged over the
    runs of equal cost (seeds); between costs it is interpolated linearly in log-log coordinates
    (errors follow power laws in cost), never extrapolated. ``at`` defaults to the largest cost every
    series reaches. The cost to ``tol`` is where the series first falls to ``tol`` (interpolated
    between the bracketing points; the cheapest point if it is already below).
    Returns {"at", "tol", "series": [{series, points, error_at, cost_to_tol, reached}] ranked}.
    """
    good = [r for r in rows if "error" not in r and r["status"] == "complete"]

    def cost_of(r):
        return r.get("wall_time_s") if cost == "wall_time_s" else r["summary"].get(cost)

    _require_metric(good, metric)
    if cost != "wall_time_s" and not any(cost in r["summary"] for r in good):
        known = sorted({k for r in good for k in r["summary"]}) + ["wall_time_s"]
        raise ConfigError(f"--cost: no run has a summary key '{cost}'{suggest(cost, known)}")
    for name, v in (("--at", at), ("--tol", tol)):
        if v is not None and not v > 0:
            raise ConfigError(f"{name}: must be positive, got {v}")

    def cost_x(r):
        c = cost_of(r)
        return float(c) if c is not None and c > 0 else None

    series = _collect(good, metric, vary, cost_x)
    out = []
    for key, by_cost in series.items():
        pts = [(c, sum(ys) / len(ys), len(ys)) for c, ys in sorted(by_cost.items())]
        out.append({"series": json.loads(key), "points": [{"cost": c, "mean": y, "n": n} for c, y, n in pts]})
    if at is None and out:
        top = min(s["points"][-1]["cost"] for s in out)
        at = top if top >= max(s["points"][0]["cost"] for s in out) else None
    for s in out:
        pts = [(p["cost"], p["mean"]) for p in s["points"]]
        s["error_at"] = _at(pts, at) if at is not None else None
        s["cost_to_tol"], s["reached"] = _to_tol(pts, tol) if tol is not None else (None, None)

    def rank_key(s):
        e, c = s["error_at"], s["cost_to_tol"]
        return (e is None, e if e is not None else 0.0, c is None, c if c is not None else 0.0)

    return {"at": at, "tol": tol, "cost": cost, "metric": metric, "series": sorted(out, key=rank_key)}


def _at(pts, at):
    """The metric at cost ``at`` by log-log interpolation (None outside the measured costs)."""
    for (c0, y0), (c1, y1) in itertools.pairwise(pts):
        if c0 <= at <= c1:
            if y0 <= 0 or y1 <= 0:  # a zero error: no logarithm; linear is all one can say
                return y0 + (y1 - y0) * (at - c0) / (c1 - c0) if c1 != c0 else y0
            return _loglog(c0, y0, c1, y1, at)
    if pts and pts[0][0] == at:
        return pts[0][1]
    return None


def _to_tol(pts, tol):
    """(cost at which the metric first reaches ``tol``, 'interpolated' | 'at the cheapest' | None)."""
    if not pts:
        return None, None
    if pts[0][1] <= tol:
        return pts[0][0], "at the cheapest"
    for (c0, y0), (c1, y1) in itertools.pairwise(pts):
        if y1 <= tol < y0:
            if y1 <= 0:
                return c1, "interpolated"
            return _loglog(c0, y0, c1, y1, tol, inverse=True), "interpolated"
    return None, None
