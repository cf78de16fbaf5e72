"""What a finished run says about itself: how far each Monte Carlo metric lies above its exact-draw
floor (in standard errors), the convergence checks of MCMC chains, and the warning lines a run
stores in its file (``warnings``) and ``sample``/``show`` print."""

from __future__ import annotations

import math
from pathlib import Path


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, str) and len(v) > 40:
        return Path(v).name if "/" in v else v[:40]
    return str(v)


# ArviZ's and Stan's thresholds (Vehtari et al. 2021): R-hat below 1.01 with a bulk-ESS of at least
# 400; with fewer effective draws R-hat's own noise exceeds 0.01, so there only R-hat > 1.1 (the
# classic threshold, Gelman and Rubin) is flagged as chains that disagree.
R_HAT_MAX, R_HAT_COARSE, ESS_BULK_MIN = 1.01, 1.1, 400


# A metric is marked as above its floor when it exceeds it by more than this many standard errors.
# Under an exact sampler (value - floor) / (se sqrt(1 + 1/R)) would be Student-t on R - 1 = 15 degrees
# of freedom if the metrics were normal; they are skewed (mean_error is a chi, mmd2, energy and ksd2
# degenerate U-statistics with long right tails), so the mark is set where, on exact draws, about 1 to
# 2 % of runs get one for any of their 8 or 9 metrics (measured from 300-400 exact-draw sets of 1,000
# on gmm, bimodal1d and gaussian50: 1.6 %, 1.9 %, 0.3 %; at 4 SE it would be 4.5 %, 4.6 %, 0.8 %).
FLOOR_SE_MARK = 5.0


def floor_keys(name: str) -> tuple[str, str]:
    """The summary keys of a metric's floor and its standard error (tilted_<m>: tilted_floor_<m>)."""
    if name.startswith("tilted_"):
        return f"tilted_floor_{name[7:]}", f"tilted_floor_se_{name[7:]}"
    return f"floor_{name}", f"floor_se_{name}"


def above_floor(summary: dict, name: str) -> float | None:
    """How far a Monte Carlo metric lies above its exact-draw floor, in standard errors of the
    difference: (value - floor) / (se sqrt(1 + 1/R)), se = floor_se_<m> (one value's standard error
    at the target), R = floor_draws (tilted_floor_draws for a tilted_ metric; the floor's own error,
    se / sqrt(R), included). None where the run has no floor with a standard error (files from
    before floors had one, exact metrics)."""
    fk, sk = floor_keys(name)
    draws = summary.get("floor_draws")
    if name.startswith("tilted_"):
        draws = summary.get("tilted_floor_draws", draws)
    value, floor, se = summary.get(name), summary.get(fk), summary.get(sk)
    if None in (value, floor, se, draws) or not all(map(math.isfinite, (value, floor, se))) or se <= 0:
        return None
    return (value - floor) / (se * math.sqrt(1.0 + 1.0 / draws))


def far_above_floor(summary: dict) -> list[tuple[str, float]]:
    """The metrics more than FLOOR_SE_MARK standard errors above their floors, furthest first, as
    (name, standard errors). For a guided run only the tilted_ metrics: its law is the tilted one."""
    names = [k for k in summary if floor_keys(k)[1] in summary]  # the metrics with a floor's standard error
    if "guidance_gamma" in summary:
        names = [k for k in names if k.startswith("tilted_")]
    z = [(k, above_floor(summary, k)) for k in names]
    return sorted([(k, v) for k, v in z if v is not None and v > FLOOR_SE_MARK], key=lambda kv: -kv[1])


def floor_warning(summary: dict, params: dict | None = None) -> list[str]:
    """One line when some metric is far above its floor (its Monte Carlo noise cannot explain it),
    naming the worst two, with a hint drawn from the run's own options; [] otherwise."""
    far = far_above_floor(summary)
    if not far:
        return []
    params = params or {}
    said = []
    for k, z in far[:2]:
        fk, sk = floor_keys(k)
        ses = f"{z:.0f}" if z < 1e6 else f"{z:.1e}"  # a diverged run's: not a 150-digit integer
        said.append(f"{k} {fmt(summary[k])} against {fmt(summary[fk])} ± {fmt(summary[sk])} ({ses} SE)")
    more = f" and {len(far) - 2} more" if len(far) > 2 else ""
    hints = []
    if "step_size" in params:
        hints.append("a smaller --step-size (discretisation bias)")
    if "steps" in params:
        hints.append("more --steps")
    if params.get("init") not in (None, "target") and "r_hat_max" in summary:
        hints.append("--init target")
    if params.get("adapt") is False:
        hints.append("--adapt")
    tail = f"; try {_either(hints)}" if hints else ""
    if summary.get("score_mse", 0) > 0:  # a wrong score (--score-error, a learned one, guidance): steps cannot fix that
        tail += f" (the score is not exact, score_mse {fmt(summary['score_mse'])}: that part does not shrink with steps)"
    line = (f"warning: {'; '.join(said)}{more} above the exact-draw floor: more than Monte Carlo noise, the "
            f"sampler's error{tail}")
    return [line]


def _either(hints: list[str]) -> str:
    """'a, b or c' (a hint list as one phrase)."""
    return f"{', '.join(hints[:-1])} or {hints[-1]}" if len(hints) > 1 else hints[0]


def run_warnings(summary: dict, params: dict | None, status: str) -> list[str]:
    """What a finished run warns of (sample, show, the file's ``warnings``): the convergence checks
    of a complete MCMC run and metrics far above their floors."""
    if status != "complete":
        return []
    return convergence_warnings(summary, params) + floor_warning(summary, params)


def convergence_warnings(summary: dict, params: dict | None = None) -> list[str]:
    """One line per failed convergence check of an MCMC run, with a hint (not the options the run
    already used: ``params``); [] for a run that passes (or that has no diagnostics: diffusion
    samplers, runs too short to have them)."""
    out = []
    r, e = summary.get("r_hat_max"), summary.get("ess_bulk_min")
    if r is None or e is None:
        return out
    params = params or {}
    hints = ["run more --steps", "save more frames (--save-every)"]
    hints += [] if params.get("init", "target") == "target" else ["start from --init target"]
    hints += ["use --adapt"] if params.get("adapt") is False else []
    if r > R_HAT_COARSE or (r > R_HAT_MAX and e >= ESS_BULK_MIN):
        out.append(f"warning: r_hat_max {fmt(r)} > {R_HAT_COARSE if e < ESS_BULK_MIN else R_HAT_MAX}: the chains "
                   f"disagree (not mixed, stuck in different modes, or too few frames per chain); "
                   f"{_either(hints)}")
    if e < ESS_BULK_MIN:
        out.append(f"warning: ess_bulk_min {fmt(e)} < {ESS_BULK_MIN}: too few effective draws for reliable means "
                   f"and R-hat; run more --steps, or save more frames (--save-every) or chains (--trajectory-particles)")
    return out
