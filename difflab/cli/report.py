"""What difflab prints on a terminal: progress, a run's summary, compare's tables, a sweep's
display, the targets list and a run's record (rich, imported only here, when something is shown)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from difflab.errors import DifflabError
from difflab.run import checks


def progress(total: int):
    """A rich progress bar on stderr: (context manager, on_step callback)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    progress = Progress(TextColumn("sampling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=True)
    task = progress.add_task("run", total=total)
    every = max(1, total // 200)

    def on_step(k: int) -> None:
        if k % every == 0 or k == total:
            progress.update(task, completed=k)

    return progress, on_step


def run_summary(path, run) -> None:
    """A finished run's final metrics beside their exact-draw floors (± their standard errors), and
    how many standard errors above the floor each lies (marked ``*`` beyond FLOOR_SE_MARK)."""
    from rich.console import Console
    from rich.table import Table

    from difflab.results.analysis import METRICS
    from difflab.run.checks import FLOOR_SE_MARK, above_floor, floor_keys, fmt

    summary = run.summary
    z = {m: above_floor(summary, m) for m in METRICS if m in summary}
    table = Table(title=f"{path}  ({run.status}, {run.steps_done} steps, {run.attrs['wall_time_s']:.2f} s)",
                  caption=f"* more than {FLOOR_SE_MARK:g} standard errors above the floor" if any(
                      (v or 0) > FLOOR_SE_MARK for v in z.values()) else None)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("exact-draw floor", justify="right")
    table.add_column("above floor", justify="right")
    for m, zm in z.items():
        floor, se = floor_keys(m)
        shown = fmt(summary.get(floor)) + (f" ± {fmt(summary[se])}" if summary.get(se) is not None else "")
        table.add_row(m, fmt(summary[m]), shown if floor in summary else "-",
                      "-" if zm is None else f"{zm:.1f} SE" + (" *" if zm > FLOOR_SE_MARK else "  "))
    Console().print(table)
    terms = [k for k in DECOMPOSITION if k in summary]
    if terms:
        split = Table(title="error decomposition")
        split.add_column("term")
        split.add_column("value", justify="right")
        split.add_column("standard error", justify="right")
        for k in terms:
            split.add_row(k, fmt(summary[k]), fmt(summary.get(f"{k}_se")))
        Console().print(split)


# what the run summary prints of the error decomposition, in reading order
DECOMPOSITION = ("kl_prior", "kl_path", "kl_delta", "kl_path_gap", "kl_early_stop", "exact_kl_target_out",
                 "score_error_term", "w2_prior", "w2_discretisation", "w2_score_error", "w2_early_stop")


def compare(cmp, rows, o: dict) -> None:
    """compare's output for its options ``o``: grouped by a parameter (--by/--fit), ranked at a
    cost (--at/--tol), or one row per run (table, JSON or CSV)."""
    import typer

    if o["by"] is not None or o["fit"]:
        return compare_by(cmp, rows, o["by"], o["metric"], o["fit"], o["as_json"])
    if o["at"] is not None or o["tol"] is not None:
        return compare_cost(cmp, rows, o["metric"], o["cost"], o["vary"], o["at"], o["tol"], o["as_json"])
    if not (o["as_json"] or o["as_csv"]):
        return compare_table(cmp, rows, o["metric"], o["sort"], o["wide"])
    params = cmp.differing_params(rows)
    cols, flat = cmp.flatten(rows, params, o["metric"])
    if o["sort"]:
        flat = cmp.sort_rows(flat, o["sort"], cols)
    if o["as_json"]:
        order = {d["run"]: i for i, d in enumerate(flat)}
        return typer.echo(cmp.to_json(sorted(rows, key=lambda r: order[r["run"]])))
    typer.echo(cmp.to_csv(cols, flat), nl=False)


def after_run(path, run, quiet: bool, as_json: bool = False) -> None:
    """What sample prints when a run is saved: its path (-q), the run as JSON (--json) or its
    summary table, then on stderr the warnings the run stored (a damaged floor-cache entry it
    recomputed, ``checks.run_warnings``)."""
    import json

    from difflab.results.analysis import to_json

    warn = json.loads(run.attrs["warnings"])
    if as_json:
        print(to_json({"run": str(path), "status": run.status, "steps_done": run.steps_done, "params": run.params,
                       "summary": run.summary, "warnings": warn}), flush=True)
    elif quiet or not run.summary:  # no summary (interrupted while summarising): its path alone
        print(path, flush=True)
    else:
        run_summary(path, run)
    for line in warn:
        print(line, file=sys.stderr, flush=True)


def compare_table(cmp, rows, metrics=None, sort: str | None = None, wide: bool = False) -> None:
    """The compare table, one group per sampler and target: the run, its status and steps, the
    parameters that vary within the group (sorted by them), then the metric columns, labelled with
    their kind. A group wider than the terminal is split into tables that repeat the identifying
    columns (no column is ever squeezed); ``wide``: one table per group at its natural width."""
    width = _width()
    cols, flat = cmp.flatten(rows, cmp.differing_params(rows), metrics)  # a metric no run has: ConfigError
    if sort:
        cmp.sort_rows(flat, sort, cols)  # an unknown column: ConfigError, before any output
    marked = False
    for (sampler, target), group in cmp.groups(rows):
        params = cmp.table_params(group)
        known = {k for r in group for k in r["summary"]}
        cols, flat = cmp.flatten(group, params, [m for m in metrics if m in known] if metrics else None)
        flat = cmp.sort_rows(flat, sort, cols) if sort in cols else cmp.natural_order(flat, params)
        # status and steps_done only where they say something (a run not complete, or cut short)
        extra = [c for c in ("status", "steps_done") if any(d.get(c) != want for d, want in
                 zip(flat, ["complete" if c == "status" else r["params"]["steps"] for r in flat_rows(group, flat)]))]
        ident = ["run", *extra, *params]
        shown = [c for c in cols if c not in ("run", "status", "steps_done", *params)]
        heads = {c: c if c in ident else f"{c}\n{cmp.KIND_LABEL[cmp.metric_kind(c)]}" for c in cols}
        # Default file names (<sampler>-<target>-[<label>-]<hash>.h5): the title says the prefix once, the
        # varying-parameter columns are the label, the rows show the hash that tells the files apart.
        prefix = f"{sampler}-{target}-"
        names = [Path(d["run"]).name for d in flat]
        found = [re.fullmatch(rf"{re.escape(prefix)}(?:.*-)?([0-9a-f]{{10}}(?:-\d+)?\.h5)", x) for x in names]
        short = all(found)
        cells = {c: [m.group(1) for m in found] if c == "run" and short else names if c == "run"
                 else [cmp.fmt(d.get(c)) for d in flat] for c in cols}
        marked |= _mark_above_floor(cmp, cells, shown, flat_rows(group, flat))
        w = {c: max([len(x) for x in heads[c].splitlines()] + [len(x) for x in cells[c]]) + 3 for c in cols}
        chunks = [shown] if wide or not shown else _pack(shown, w, width - sum(w[c] for c in ident) - 1)
        n = len(group)
        for i, chunk in enumerate(chunks):
            title = (f"{sampler} on {target}: {n} run{'s' if n != 1 else ''}" + (f" ({prefix}...-<run>)" if short else "")
                     + (" (continued)" if i else ""))
            _print_table(title, [*ident, *chunk], heads, cells, w, width)
    bad = [r for r in rows if "error" in r]
    if bad:
        _print_table("unreadable", ["run", "reason"], {"run": "run", "reason": "reason"},
                     {"run": [Path(r["run"]).name for r in bad], "reason": [r["error"] for r in bad]},
                     None, width)
    import textwrap

    print(textwrap.fill("metric kinds: exact = from exact laws; of the run = an exact property of this run; MC = a "
                        "Monte Carlo estimate (see its floor_<metric> in difflab show)", width))
    if marked:
        print(textwrap.fill(f"* more than {checks.FLOOR_SE_MARK:g} standard errors above its exact-draw floor: not "
                            f"Monte Carlo noise (difflab show RUN gives the floor and its standard error)", width))


def _mark_above_floor(cmp, cells: dict, metrics: list, runs: list) -> bool:
    """Mark with ``*`` the cells of metrics more than FLOOR_SE_MARK standard errors above their
    floors (the other cells of such a column get a space, so the numbers stay aligned)."""
    marked = False
    for c in metrics:
        far = [(checks.above_floor(r["summary"], c) or 0.0) > checks.FLOOR_SE_MARK for r in runs]
        if any(far):
            cells[c] = [x + ("*" if f else " ") for x, f in zip(cells[c], far)]
            marked = True
    return marked


def flat_rows(group, flat):
    """The group's rows in the order of ``flat``."""
    by_run = {r["run"]: r for r in group}
    return [by_run[d["run"]] for d in flat]


def _width() -> int:
    """The terminal's columns (COLUMNS when set; 100 when the output is not a terminal)."""
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


def _pack(names: list, w: dict, room: int) -> list[list]:
    """Metric columns in order, in as few chunks as fit ``room`` characters each (one per chunk
    at least: a column wider than the room gets a table of its own)."""
    chunks, cur, used = [], [], 0
    for c in names:
        if cur and used + w[c] > room:
            chunks.append(cur)
            cur, used = [], 0
        cur.append(c)
        used += w[c]
    return [*chunks, cur] if cur else chunks


def _print_table(title, cols, heads, cells, w, width) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for c in cols:
        table.add_column(heads[c], justify="left" if c in ("run", "status", "reason") else "right",
                         no_wrap=c != "reason", overflow="fold")
    for i in range(len(cells[cols[0]])):
        table.add_row(*(cells[c][i] for c in cols))
    natural = sum(w[c] for c in cols) + 1 if w else width
    Console(width=max(width, natural), soft_wrap=False).print(table)


def compare_by(cmp, rows, by, metric, fit: bool, as_json: bool) -> None:
    """compare --by PARAM --metric M [--fit]: a table per series, mean and spread over seeds."""

    if by is None:
        raise DifflabError("--fit: needs --by PARAM (the parameter to fit against)")
    if not metric or len(metric) != 1:
        raise DifflabError("--by: needs exactly one --metric (the summary key to aggregate), e.g. --metric exact_w2")
    groups = cmp.group_by(rows, by, metric[0])
    for g in groups:
        if fit:
            g["fit"] = cmp.fit_slope(g["points"])
    if as_json:
        print(cmp.to_json(groups))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 400)
    for g in groups:
        title = ", ".join(f"{k}={cmp.fmt(v)}" for k, v in g["series"].items()) or "all runs"
        table = Table(title=title)
        for c in (by, "runs", f"mean {metric[0]}", "sd over seeds"):
            table.add_column(c, justify="right")
        for p in g["points"]:
            table.add_row(cmp.fmt(p["value"]), str(p["n"]), cmp.fmt(p["mean"]), cmp.fmt(p["sd"]))
        console.print(table)
        if fit:
            f = g["fit"]
            if f["slope"] is None:
                console.print("log-log slope: needs two points with positive values")
            else:
                ci = "" if f["ci_low"] is None else f" (95% CI {f['ci_low']:.3g} to {f['ci_high']:.3g})"
                console.print(f"log-log slope of {metric[0]} against {by}: {f['slope']:.3g}{ci} over {f['k']} points")


def compare_cost(cmp, rows, metric, cost, vary, at, tol, as_json: bool) -> None:
    """compare --metric M --at COST / --tol T: series ranked by error at a cost, and cost to tolerance."""

    if not metric or len(metric) != 1:
        raise DifflabError("--at/--tol: needs exactly one --metric (the error to rank by), e.g. --metric exact_w2")
    ranked = cmp.cost_rank(rows, metric[0], cost=cost, vary=vary, at=at, tol=tol)
    if as_json:
        print(cmp.to_json(ranked))
        return
    from rich.console import Console
    from rich.table import Table

    m, kind = metric[0], cmp.KIND_LABEL[cmp.metric_kind(metric[0])]
    title = f"{m} ({kind}) against {cost}" + (f", at {cost} = {cmp.fmt(ranked['at'])}" if ranked["at"] else "")
    table = Table(title=title, caption="log-log interpolation between measured costs, never extrapolated; "
                                       "means over seeds")
    for c in ("rank", "series", f"{cost} measured", f"{m} at {cost} = {cmp.fmt(ranked['at'])}"
              if ranked["at"] else f"{m} at a common {cost}", *([f"{cost} to reach {m} <= {cmp.fmt(tol)}"] if tol else [])):
        table.add_column(c, justify="left" if c == "series" else "right")
    for i, s in enumerate(ranked["series"], 1):
        name = ", ".join(f"{k}={cmp.fmt(v)}" for k, v in s["series"].items()) or "all runs"
        costs = f"{cmp.fmt(s['points'][0]['cost'])} to {cmp.fmt(s['points'][-1]['cost'])} ({len(s['points'])})"
        at_cell = cmp.fmt(s["error_at"]) if s["error_at"] is not None else "out of range"
        row = [str(i), name, costs, at_cell]
        if tol:
            row.append("not reached" if s["cost_to_tol"] is None else
                       ("<= " if s["reached"] == "at the cheapest" else "") + cmp.fmt(s["cost_to_tol"]))
        table.add_row(*row)
    Console(width=None if sys.stdout.isatty() else 400).print(table)


def sweep_display(total: int, live: bool):
    """One display for a whole sweep, however many processes run it: (context, on_done(line, failed)).

    On a terminal, a bar of finished runs (with the failures so far) under the lines of finished
    runs; otherwise just the lines, one per finished run, on stderr."""
    import contextlib

    if not live or total == 0:
        return contextlib.nullcontext(), lambda line, failed: print(line, file=sys.stderr)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]}"),
                        TimeElapsedColumn(), console=Console(stderr=True))
    task = progress.add_task("sweep", total=total, failed="")
    n_failed = 0

    def on_done(line: str, failed: bool) -> None:
        nonlocal n_failed
        n_failed += failed
        progress.console.print(line, highlight=False)
        progress.update(task, advance=1, failed=f"{n_failed} failed" if n_failed else "")

    return progress, on_done


SHOWN_NOT_STARTED = 10  # a stopped sweep lists this many of its not-started runs, then counts the rest


def sweep_outcome(sw, todo, results, stopped: bool = False) -> bool:
    """Print a sweep's run files, then its diverged and failed runs, and for a stopped sweep what
    was interrupted and what was not started; True if any failed."""
    status = {run.index: results.get(run.index, ("", sw.NOT_STARTED, ""))[1] for run, _ in todo}
    failed = [(run, results[run.index][2]) for run, _ in todo if status[run.index] == "failed"]
    diverged = [results[run.index][0] for run, _ in todo if status[run.index] == "diverged"]
    for path in sorted(p for p, *_ in results.values() if p):
        print(path)
    if stopped:
        interrupted = [results[run.index][0] for run, _ in todo if status[run.index] == "interrupted"]
        waiting = [run for run, _ in todo if status[run.index] == sw.NOT_STARTED]
        done = sum(s in ("complete", "diverged") for s in status.values())
        print(f"sweep stopped: {done} done, {len(interrupted)} interrupted (saved as such; re-run the sweep to "
              f"redo them), {len(waiting)} not started", file=sys.stderr)
        for run in waiting[:SHOWN_NOT_STARTED]:
            print(f"  not started: run {run.index} ({sw.describe(run)})", file=sys.stderr)
        if len(waiting) > SHOWN_NOT_STARTED:  # a large sweep: a summary, not a line per run
            print(f"  ... and {len(waiting) - SHOWN_NOT_STARTED} more not started (runs "
                  f"{waiting[SHOWN_NOT_STARTED].index}-{waiting[-1].index}); re-run the sweep to do them",
                  file=sys.stderr)
    if diverged:
        print(f"{len(diverged)} run(s) diverged (their files say so): {', '.join(diverged)}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} run(s) failed:", file=sys.stderr)
        for run, message in failed:
            print(f"  run {run.index} ({sw.describe(run)}): {message}", file=sys.stderr)
    return bool(failed)


def targets_table(as_json: bool = False) -> None:
    """The shipped targets: name, kind, dimension, components (or states), the file's first comment."""
    from difflab.targets import build_target, parse_target
    from difflab.targets.files import shipped_targets

    rows = []
    for name, text in shipped_targets().items():
        spec = parse_target(text, f"{name}.yaml (shipped)", name)
        t = build_target(spec)
        first = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#")), "")
        rows.append({"name": name, "kind": spec.kind, "dim": int(t.dim),
                     **({"states": int(t.n_states)} if t.discrete else
                        {"components": int(t.components.n_components)} if t.components is not None else {}),
                     "description": first})
    if as_json:
        from difflab.results.analysis import to_json

        return print(to_json(rows))
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for c in ("name", "kind", "dim", "components / states", "description"):
        table.add_column(c)
    for r in rows:
        size = f"{r['states']} states" if "states" in r else str(r.get("components", "-"))
        table.add_row(r["name"], r["kind"], str(r["dim"]), size, r["description"])
    Console().print(table)


def run_table(run, rec, as_json: bool = False) -> None:
    """``difflab show``: a run's identity, parameters and summary (a table, or JSON), then on stderr
    the run's warnings (checks.run_warnings)."""
    if as_json:
        from difflab.results.analysis import to_json
        from difflab.run.checks import run_warnings

        warn = run_warnings(rec.summary, rec.params, rec.status)
        return print(to_json({"run": str(run), "attrs": rec.attrs, "params": rec.params, "summary": rec.summary,
                              "warnings": warn}))
    from rich.console import Console
    from rich.table import Table

    from difflab.run.checks import floor_keys, fmt
    table = Table(title=str(run), show_header=False)
    table.add_column("key")
    table.add_column("value", justify="right")
    for k in ("sampler", "target", "seed", "status", "steps_done", "diverged_step", "wall_time_s",
              "n_particles", "dim", "created", "difflab_version", "schema_version"):
        table.add_row(k, fmt(rec.attrs.get(k)))
    table.add_section()
    for k, v in sorted(rec.params.items()):
        table.add_row(f"param {k}", fmt(v))
    table.add_section()
    from difflab.results.analysis import METRICS

    shown = {*METRICS, *(k for m in METRICS for k in floor_keys(m))}  # in the metric table below
    for k, v in sorted(rec.summary.items()):
        if k not in shown:
            table.add_row(k, fmt(v))
    Console().print(table)
    run_summary(run, rec)
    from difflab.run.checks import run_warnings

    for line in run_warnings(rec.summary, rec.params, rec.status):
        print(line, file=sys.stderr)


def cache_table(cache, clear: bool, as_json: bool = False) -> None:
    """``difflab cache``: the floor cache's folder, its entries (target, particles, size) and total
    size; with ``clear``, what was removed."""
    from difflab.results.analysis import to_json

    removed = cache.clear() if clear else None
    rows = [{"entry": p.name, **cache.describe(p), "bytes": p.stat().st_size} for p in cache.entries()]
    doc = {"folder": str(cache.folder), "entries": rows, "bytes": sum(r["bytes"] for r in rows),
           **({"removed": removed} if clear else {})}
    if as_json:
        return print(to_json(doc))
    if clear:
        print(f"removed {removed} entr{'y' if removed == 1 else 'ies'} from {cache.folder}")
        return None
    print(f"{cache.folder}: {len(rows)} entr{'y' if len(rows) == 1 else 'ies'}, {doc['bytes']:,} bytes")
    for r in rows:
        damaged = f"  (damaged: {r['problem']}; the next run that needs it recomputes it)" if r["problem"] else ""
        print(f"  {r['target']:<20} n={r['particles']!s:<8} {r['entry']}{damaged}")
    return None
