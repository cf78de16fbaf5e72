"""``difflab plot``: figures of run files, drawn against the exact target (extra ``difflab[plot]``).

Kinds (one panel per run unless said):
- ``samples``: the samples over the exact density's contours (the first two coordinates; the exact
  marginal of a mixture on them is the mixture of the sub-means and sub-covariances); in 1-D a
  histogram against the exact density.
- ``trajectories``: the saved trajectories of the first particles over the same contours (1-D:
  position against step).
- ``metrics``: one panel per metric, its series against the step for every run (log scale when
  positive).
- ``pmf`` (discrete targets): the exact pmf of the most probable states against the samples'
  frequencies, the total variation in the title.
- ``fit``: with ``--by PARAM --metric M``, log-log of the metric's mean over seeds against PARAM per
  series (error bars: the sd over seeds) with the least-squares line and its slope (compare's fit).

Figures have a fixed size (``PANEL`` inches per panel times ``dpi``) and are written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path

from difflab import yamlio
from difflab.errors import ConfigError, suggest

KINDS = ("samples", "trajectories", "metrics", "pmf", "fit")
FORMATS = (".png", ".pdf")
PANEL = (4.5, 4.0)  # inches per panel
MAX_POINTS = 5000  # samples drawn per panel (the first ones)
MAX_PATHS = 50  # trajectories drawn per panel
MAX_STATES = 40  # states shown in a pmf panel


def default_kind(records, by: str | None) -> str:
    if by is not None:
        return "fit"
    return "pmf" if all(_is_discrete(r) for r in records) else "samples"


def _is_discrete(rec) -> bool:
    """A run on a discrete target, by the kind of the target file stored in the run (whatever the
    sampler, a plug-in's included)."""
    from difflab.targets import is_discrete

    doc = yamlio.load(rec.target_yaml, f"{rec.path}: /config target_yaml") if rec.target_yaml else None
    return isinstance(doc, dict) and isinstance(doc.get("kind"), str) and is_discrete(doc["kind"])


def _target(rec):
    """The run's exact target (for a score of the user's own, its reference: no code is run)."""
    from difflab.targets import build_exact_target, parse_target
    from difflab.targets.files import sealed

    with sealed():  # the YAML the run file holds, and nothing it names
        return build_exact_target(parse_target(rec.target_yaml, f"{rec.path}: /config target_yaml",
                                               rec.attrs.get("target", "target")))


def _grid(n: int) -> tuple[int, int]:
    cols = min(3, n)
    return math.ceil(n / cols), cols


def figure_size(kind: str, n_runs: int, n_metrics: int = 1, dpi: int = 100) -> tuple[int, int]:
    """(width, height) in pixels of a figure of ``kind``."""
    panels = n_metrics if kind == "metrics" else 1 if kind == "fit" else n_runs
    rows, cols = _grid(panels)
    return round(cols * PANEL[0] * dpi), round(rows * PANEL[1] * dpi)


def load(paths):
    from difflab.run.io import read_run

    return [read_run(p, samples=True, series=True, trajectory=True) for p in paths]


BOX_DRAWS = 4000  # exact draws that set a panel's box (with the samples shown): seeded, so figures repeat


def _box(target, xs, coords):
    """The plotting box of the coordinates ``coords``: the 0.5 % and 99.5 % quantiles of the shown
    points together with exact target draws, widened to hold the central 99 % of the target."""
    import numpy as np

    exact = target.sample(np.random.default_rng(0), BOX_DRAWS)[:, coords]
    pts = np.concatenate([xs[np.isfinite(xs).all(1)], exact])
    lo, hi = np.quantile(pts, 0.005, axis=0), np.quantile(pts, 0.995, axis=0)
    return np.minimum(lo, np.quantile(exact, 0.005, axis=0)), np.maximum(hi, np.quantile(exact, 0.995, axis=0))


def _contours(ax, target, xs):
    """Contours of the exact marginal density of the first two coordinates (where the target
    declares marginals) over the box holding the points ``xs`` (n, 2)."""
    import numpy as np

    lo, hi = _box(target, xs, [0, 1])
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    if not target.has_marginals:
        return
    m = target.marginal([0, 1])
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 160), np.linspace(lo[1], hi[1], 160))
    dens = np.exp(m.log_prob(np.stack([gx.ravel(), gy.ravel()], axis=1))).reshape(gx.shape)
    ax.contour(gx, gy, dens, levels=8, cmap="viridis", linewidths=0.8)


def _title(rec, label: str) -> str:
    """A panel's title: the run's label among the plotted runs (analysis.labels), then what it is."""
    return f"{label}\n{rec.attrs.get('sampler')} on {rec.attrs.get('target')} ({rec.attrs.get('status')})"


def _samples(ax, rec):
    import numpy as np

    target, x = _target(rec), np.asarray(rec.samples)
    if target.dim == 1:
        xs = x[np.isfinite(x[:, 0]), 0]
        ax.hist(xs, bins=60, density=True, alpha=0.5, label=f"samples (n = {len(xs)})")
        lo, hi = _box(target, xs[:, None], [0])
        grid = np.linspace(lo[0], hi[0], 400)
        ax.plot(grid, np.exp(target.log_prob(grid[:, None])), color="k", lw=1.2, label="exact density")
        ax.legend(fontsize=7)
    else:
        shown = x[:MAX_POINTS, :2]
        _contours(ax, target, shown)
        ax.scatter(shown[:, 0], shown[:, 1], s=2, alpha=0.4, color="C3", label=f"{len(shown)} of {len(x)} samples")
        ax.legend(fontsize=7, loc="upper right")
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")


def _trajectories(ax, rec):
    import numpy as np

    target, traj, step = _target(rec), np.asarray(rec.trajectory), np.asarray(rec.trajectory_step)
    paths = traj[:, :MAX_PATHS]
    if traj.shape[-1] == 1:
        ax.plot(step, paths[:, :, 0], lw=0.6, alpha=0.7)
        ax.set_xlabel("step")
        ax.set_ylabel("x")
    else:
        _contours(ax, target, paths.reshape(-1, traj.shape[-1])[:, :2])
        ax.plot(paths[:, :, 0], paths[:, :, 1], lw=0.6, alpha=0.7)  # one line per column: per path
        ax.scatter(paths[-1, :, 0], paths[-1, :, 1], s=6, color="k", zorder=3, label="end")
        ax.legend(fontsize=7, loc="upper right")


def empirical_pmf(target, samples):
    """(frequencies over the target's states, number of fully unmasked samples) of written samples."""
    import numpy as np

    x = np.asarray(samples)
    ok = np.isfinite(x).all(1)
    codes = np.abs(x[ok][:, :, None] - target.labels).argmin(-1)  # written values -> codes
    return np.bincount(target.index(codes), minlength=target.n_states) / max(1, ok.sum()), int(ok.sum())


def _pmf(ax, rec):
    import numpy as np

    target = _target(rec)  # discrete: render() checked every run before drawing
    freq, n = empirical_pmf(target, rec.samples)
    tv = 0.5 * np.abs(freq - target.probs).sum()
    top = np.argsort(-target.probs, kind="stable")[:MAX_STATES]
    pos = np.arange(len(top))
    ax.bar(pos, target.probs[top], color="0.75", label="exact pmf")
    ax.plot(pos, freq[top], "o", ms=3, color="C3", label=f"samples (n = {n})")
    ax.set_xlabel(f"state (the {len(top)} most probable of {target.n_states})")
    ax.set_ylabel("probability")
    ax.legend(fontsize=7)
    return f"TV = {tv:.3g}"


def _metric_names(records, metric):
    have = sorted({k for r in records for k in r.metrics if k != "step"})
    if metric:
        for m in metric:
            if m not in have:
                raise ConfigError(f"--metric: no run has a metric series '{m}'{suggest(m, have)}; "
                                  f"series: {', '.join(have) or 'none'}")
        return list(metric)
    return have


def render(paths, kind: str | None, out: Path | None, *, by: str | None = None, metric=(), dpi: int = 100) -> Path:
    """Draw ``kind`` for the runs at ``paths`` and write it to ``out`` (.png or .pdf); its path."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("difflab plot needs matplotlib: pip install 'difflab[plot]'") from None
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"--kind: expected one of {', '.join(KINDS)}, got '{kind}'{suggest(kind, KINDS)}")
    if dpi < 10 or dpi > 1200:
        raise ConfigError(f"--dpi: expected 10 to 1200, got {dpi}")
    if out is not None and out.suffix.lower() not in FORMATS:
        raise ConfigError(f"--out: '{out}': expected a .png or .pdf file name")
    # A fit needs only the runs' parameters and summaries (compare reads those): no samples loaded.
    records = [] if by is not None and kind in (None, "fit") else load(paths)
    kind = kind or default_kind(records, by)
    if (kind == "fit") != (by is not None):
        raise ConfigError("--by: goes with --kind fit (and needs one --metric)" if by is not None
                          else "--kind fit: needs --by PARAM and one --metric")
    names = []
    if kind == "fit":
        if len(metric) != 1:
            raise ConfigError("--kind fit: needs exactly one --metric (the error to fit)")
        from difflab.results.analysis import fit_slope, group_by, load_rows

        groups = group_by(load_rows(paths), by, metric[0])
        fits = [fit_slope(g["points"]) for g in groups]
    elif kind == "metrics":
        names = _metric_names(records, metric)
        if not names:
            raise ConfigError("--kind metrics: the runs have no metric series (--metrics-every 0?)")
    elif kind == "pmf":
        for r in records:
            if not _is_discrete(r):
                raise ConfigError(f"--kind pmf: {r.path} is a run on a continuous target; use --kind samples")
    elif any(_is_discrete(r) for r in records):
        bad = next(r for r in records if _is_discrete(r))
        raise ConfigError(f"--kind {kind}: {bad.path} is a run on a discrete target; use --kind pmf or metrics")
    if out is None:
        stem = Path(paths[0]).stem + (f"-and-{len(paths) - 1}-more" if len(paths) > 1 else "")
        out = Path("plots") / f"{stem}-{kind}.png"

    matplotlib.use("Agg", force=True)  # files only: no display needed, same output everywhere
    import matplotlib.pyplot as plt

    width, height = figure_size(kind, len(paths), len(names), dpi)
    panels = len(names) if kind == "metrics" else 1 if kind == "fit" else len(records)
    rows, cols = _grid(panels)
    fig, axes = plt.subplots(rows, cols, figsize=(width / dpi, height / dpi), dpi=dpi, squeeze=False)
    try:
        flat = axes.ravel()
        for ax in flat[panels:]:
            ax.set_visible(False)
        from difflab.results.analysis import labels, row_of

        legend = labels([row_of(r) for r in records])  # each run's k=v label among the plotted runs
        if kind == "fit":
            _fit(flat[0], groups, fits, by, metric[0])
        elif kind == "metrics":
            for ax, name in zip(flat, names):
                _metric_panel(ax, records, name, legend)
        else:
            draw = {"samples": _samples, "trajectories": _trajectories, "pmf": _pmf}[kind]
            for ax, rec, label in zip(flat, records, legend):
                extra = draw(ax, rec)
                ax.set_title(_title(rec, label) + (f", {extra}" if extra else ""), fontsize=8)
        fig.tight_layout()
        _save(fig, out, dpi)
    finally:
        plt.close(fig)
    return out


PLOTTED_MAX = 1e100  # metric values beyond it (a diverging run's) are left out of the metric panels


def _metric_panel(ax, records, name, legend):
    import numpy as np

    positive = True
    for rec, label in zip(records, legend):
        if name in rec.metrics:
            y = np.asarray(rec.metrics[name], dtype=float)
            # a diverging run's values (1e145, inf) break matplotlib's tick locators: not drawn
            y = np.where(np.isfinite(y) & (np.abs(y) < PLOTTED_MAX), y, np.nan)
            ax.plot(rec.metrics["step"], y, marker=".", lw=1, label=label)
            positive &= bool(np.all(y[np.isfinite(y)] > 0))
    if positive:
        ax.set_yscale("log")
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("step")
    ax.legend(fontsize=6)


def _fit(ax, groups, fits, by, metric):
    import numpy as np

    for i, (g, f) in enumerate(zip(groups, fits)):
        pts = [p for p in g["points"] if isinstance(p["value"], (int, float)) and p["value"] > 0 and p["mean"] > 0]
        if not pts:
            continue
        x = np.array([p["value"] for p in pts], dtype=float)
        y = np.array([p["mean"] for p in pts])
        sd = np.array([p["sd"] or 0.0 for p in pts])
        label = ", ".join(f"{k}={v}" for k, v in g["series"].items()) or "all runs"
        ax.errorbar(x, y, yerr=np.minimum(sd, 0.999 * y), fmt="o", ms=4, color=f"C{i}", capsize=2, label=label)
        if f["slope"] is not None:
            ci = "" if f["ci_low"] is None else f" [{f['ci_low']:.2f}, {f['ci_high']:.2f}]"
            ax.plot(x, np.exp(f["intercept"]) * x ** f["slope"], "-", color=f"C{i}", lw=1,
                    label=f"slope {f['slope']:.2f}{ci}")
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(by)
    ax.set_ylabel(f"{metric} (mean over seeds)")
    ax.legend(fontsize=7)


def _save(fig, out: Path, dpi: int) -> None:
    """Write atomically: a temporary file beside ``out``, then a rename."""
    from difflab.run.io import atomic_path

    with atomic_path(out, out.suffix) as tmp:
        fig.savefig(tmp, dpi=dpi, format=out.suffix[1:].lower())

