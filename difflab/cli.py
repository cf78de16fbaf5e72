"""The ``difflab`` command line: parse, call, print, choose exit codes. Nothing else lives here.

Exit codes: 0 complete; 2 bad input (one line on stderr, nothing written); 3 the run diverged
(its file says so); 130 interrupted (its file says so).
Heavy modules (numpy, scipy, h5py) are imported inside the commands, so ``difflab --help`` is quick.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from difflab.errors import DifflabError

app = typer.Typer(
    help="difflab: a sampling lab. Samplers run on targets whose scores are known in closed form, "
    "and every error is measured against the truth.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rendering it with rich costs ~0.2 s of imports per call
)
sample_app = typer.Typer(help="Run a sampler on a target and write a run file.", no_args_is_help=True,
                         rich_markup_mode=None)
app.add_typer(sample_app, name="sample")

EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130


@sample_app.callback(invoke_without_command=True)
def _sample_group(
    ctx: typer.Context,
    spec: Annotated[str | None, typer.Option("--spec", metavar="RUN.yaml", show_default=False,
                    help="Run the spec's sampler (its sampler: key) with the spec's settings: "
                         "difflab sample --spec run.yaml. With a sampler command, give --spec after it.")] = None,
) -> None:
    if ctx.invoked_subcommand is not None:
        if spec is not None:
            _fail(f"--spec: give it after the sampler (difflab sample {ctx.invoked_subcommand} --spec {spec})")
        return
    if spec is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    from difflab.samplers import SAMPLERS
    from difflab.settings import read_run_spec

    try:
        sampler = read_run_spec(spec)[0]
    except DifflabError as exc:
        _fail(str(exc))
    if sampler not in SAMPLERS:
        _fail(f"{spec}: sampler: expected one of {', '.join(SAMPLERS)}{'' if sampler else ' (the spec must name one)'}"
              f", got {sampler!r}")
    # every option at its default, then the spec's settings
    _sample(sampler, ctx, {**{o.name: o.default for o in SAMPLERS[sampler].all_options}, **_SETTINGS_DEFAULTS,
                           "spec": spec})


# ---------------------------------------------------------------- the sampler commands, from the registry
# Options of the call itself (not of the run): how settings reach it, and what it prints.
_SETTINGS = (
    ("set_", list[str] | None, typer.Option("--set", metavar="KEY=VALUE", show_default=False,
     help="Set any option of this command by its name, e.g. --set step_size=0.05 (repeatable).")),
    ("target_set", list[str] | None, typer.Option("--target-set", metavar="PATH=VALUE", show_default=False,
     help="Override a target YAML key by its dotted path, e.g. --target-set ring.radius=6 (repeatable).")),
    ("spec", str | None, typer.Option("--spec", metavar="RUN.yaml", show_default=False,
     help="A run spec: a YAML mapping of this command's options (and target_set:). Flags override it.")),
    ("quiet", bool, typer.Option("--quiet", "-q", help="No progress bar and no summary table; print only the run "
                                                       "file's path.")),
    ("force", bool, typer.Option("--force", help="Overwrite an existing run file.")),
)
_SETTINGS_DEFAULTS = {"set": None, "target_set": None, "spec": None, "quiet": False, "force": False}


def _param(name: str) -> str:
    """The Python parameter of an option key (``class`` -> ``class_``)."""
    import keyword

    return name + "_" if keyword.iskeyword(name) else name


def _typer_option(o):
    optional = o.default is None and o.typ is not bool
    names = (o.flag, o.short) if o.short else (o.flag,)
    info = typer.Option(*names, help=o.help, show_default=not optional)
    return Annotated[(o.typ | None) if optional else o.typ, info]


def _command(entry):
    """The ``difflab sample NAME`` function of a registry entry: its signature is the entry's
    options (defaults, help and types stated there once), then the settings options."""
    import inspect

    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("ctx", kw, annotation=typer.Context)]
    params += [inspect.Parameter(_param(o.name), kw, default=o.default, annotation=_typer_option(o))
               for o in entry.all_options if o.name != "force"]
    params += [inspect.Parameter(name, kw, default=_SETTINGS_DEFAULTS[name.rstrip("_")], annotation=Annotated[t, info])
               for name, t, info in _SETTINGS]

    def command(ctx: typer.Context, **kwargs) -> None:
        _sample(entry.name, ctx, {name.rstrip("_"): value for name, value in kwargs.items()})

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__, command.__name__ = entry.help, entry.name
    return command


def _register_samplers() -> None:
    from difflab.samplers import SAMPLERS

    for name, entry in SAMPLERS.items():
        sample_app.command(name)(_command(entry))


def _fail(message: str, code: int = EXIT_BAD_INPUT):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _progress(total: int):
    """A rich progress bar on stderr: (context manager, on_step callback)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("sampling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=True)
    task = progress.add_task("run", total=total)
    every = max(1, total // 200)

    def on_step(k: int) -> None:
        if k % every == 0 or k == total:
            progress.update(task, completed=k)

    return progress, on_step


def _sample(sampler: str, ctx, args: dict) -> None:
    """Run one sampler command: ``args`` are its options by key; the common ones become
    SampleOptions fields, the rest the sampler's own options."""
    from difflab import sample as sample_mod

    quiet = args["quiet"]
    try:
        args = _settings(sampler, ctx, args)
        opts = sample_mod.options_from_args(sampler, args)
        spec, target, params, path = sample_mod.prepare(opts)
    except DifflabError as exc:
        _fail(str(exc))
    show_progress = not quiet and sys.stderr.isatty()
    # SIGTERM ends a run like Ctrl-C: the file is written with status = interrupted.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        path, result, summary = sample_mod.execute(opts, spec=spec, target=target, params=params, path=path,
                                                   progress=_progress if show_progress else None)
    except OSError as exc:  # e.g. the disk filled up while writing: no partial file is left
        _fail(f"{path}: could not write the run file: {exc}", code=1)
    except DifflabError as exc:  # found while building the run's references, before any writing
        _fail(str(exc))
    finally:
        signal.signal(signal.SIGTERM, previous)
    if quiet:
        typer.echo(str(path))
    else:
        _print_summary(path, result, summary)
    if result.status == "diverged":
        typer.echo(f"warning: the run diverged at step {result.diverged_step} (non-finite values); "
                   f"{path} holds the last finite state", err=True)
        raise typer.Exit(EXIT_DIVERGED)
    if result.status == "interrupted":
        typer.echo(f"interrupted after {result.steps_done} steps; {path} holds the state reached", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)


def _settings(sampler: str, ctx, args: dict) -> dict:
    """The command's options with --spec and --set applied under the flags the user typed."""
    from difflab import settings

    options = settings.options_of(sampler)

    def typed(key: str) -> bool:  # the user gave this flag (not its default)
        source = ctx.get_parameter_source(_param(key)) if ctx.command.name == sampler else None
        return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")

    given = {key: args[key] for key in args if key in options and typed(key)}
    merged, target_sets = settings.merge(sampler, options, given=given, spec_path=args["spec"],
                                         sets=args["set"] or [], target_sets=args["target_set"] or [])
    args = {k: v for k, v in args.items() if k not in ("set", "spec")} | merged
    args["target_set"] = target_sets
    return args


def _print_summary(path, result, summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from difflab.compare import METRICS, fmt

    table = Table(title=f"{path}  ({result.status}, {result.steps_done} steps, {result.wall_time_s:.2f} s)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("exact-draw floor", justify="right")
    for m in METRICS:
        if m in summary:
            floor = f"tilted_floor_{m[7:]}" if m.startswith("tilted_") else f"floor_{m}"
            table.add_row(m, fmt(summary[m]), fmt(summary.get(floor)))
    Console().print(table)


Force = Annotated[bool, typer.Option("--force", help="Overwrite an existing run file.")]
_register_samplers()

@app.command()
def compare(
    paths: Annotated[list[Path], typer.Argument(help="Run files, e.g. runs/*.")],
    sort: Annotated[str | None, typer.Option("--sort", help="Sort rows by this column (ascending).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every field of every run as JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the table as CSV.")] = False,
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", help="Show these summary keys instead of the default metric columns (repeatable), e.g. -m tilted_sliced_w2 -m nfe.", show_default=False)] = None,
    by: Annotated[str | None, typer.Option("--by", help="Group by this parameter within each series (the other differing parameters), aggregating --metric over seeds.", show_default=False)] = None,
    fit: Annotated[bool, typer.Option("--fit", help="With --by: fit the log-log slope of the metric against the parameter, with a 95% confidence interval.")] = False,
    at: Annotated[float | None, typer.Option("--at", help="Rank series by --metric at this cost (log-log interpolated; see --cost).", show_default=False)] = None,
    tol: Annotated[float | None, typer.Option("--tol", help="Rank series by the cost at which --metric first reaches this tolerance.", show_default=False)] = None,
    cost: Annotated[str, typer.Option("--cost", help="With --at/--tol: the cost, a summary key (nfe: score evaluations per particle) or wall_time_s.")] = "nfe",
    vary: Annotated[str, typer.Option("--vary", help="With --at/--tol: the parameter that sets the cost within a series.")] = "steps",
) -> None:
    """One row per run: the parameters that differ between the runs and the final metrics."""
    from difflab import compare as cmp

    paths = [p for p in paths if not (p.name == ".gitkeep" or p.name.startswith("."))]
    rows = cmp.load_rows(paths)
    if by is not None or fit:
        if at is not None or tol is not None:
            _fail("--at/--tol: not with --by (rank runs or fit an order, one at a time)")
        _compare_by(cmp, rows, by, metric, fit, as_json)
        return
    if at is not None or tol is not None:
        _compare_cost(cmp, rows, metric, cost, vary, at, tol, as_json)
        return
    try:
        params = cmp.differing_params(rows)
        cols, flat = cmp.flatten(rows, params, metric)
    except DifflabError as exc:
        _fail(str(exc))
    if sort:
        try:
            flat = cmp.sort_rows(flat, sort, cols)
        except DifflabError as exc:
            _fail(str(exc))
    if as_json:
        order = {d["run"]: i for i, d in enumerate(flat)}
        typer.echo(cmp.to_json(sorted(rows, key=lambda r: order[r["run"]])))
        return
    if as_csv:
        typer.echo(cmp.to_csv(cols, flat), nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(caption="metric kinds: exact = from exact laws; of the run = an exact property of this run; "
                          "MC = a Monte Carlo estimate (see its floor_<metric> in difflab show)")
    for c in cols:
        header = c if c in ("run", "status", "steps_done") or c in params else f"{c}\n{cmp.KIND_LABEL[cmp.metric_kind(c)]}"
        table.add_column(header, justify="left" if c in ("run", "status") else "right", no_wrap=c != "status")
    for d in flat:
        run_name = Path(d["run"]).name
        if "error" in d:
            table.add_row(run_name, f"[red]unreadable: {d['error']}[/red]")
        else:
            table.add_row(run_name, *(cmp.fmt(d.get(c)) for c in cols[1:]))
    # Piped output is not squeezed to 80 columns (a terminal gets its own width).
    Console(width=None if sys.stdout.isatty() else 400).print(table)


def _compare_by(cmp, rows, by, metric, fit: bool, as_json: bool) -> None:
    """compare --by PARAM --metric M [--fit]: a table per series, mean and spread over seeds."""
    import json

    if by is None:
        _fail("--fit: needs --by PARAM (the parameter to fit against)")
    if not metric or len(metric) != 1:
        _fail("--by: needs exactly one --metric (the summary key to aggregate), e.g. --metric exact_w2")
    try:
        groups = cmp.group_by(rows, by, metric[0])
    except DifflabError as exc:
        _fail(str(exc))
    for g in groups:
        if fit:
            g["fit"] = cmp.fit_slope(g["points"])
    if as_json:
        typer.echo(json.dumps(groups, indent=2, sort_keys=True, default=str))
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


def _compare_cost(cmp, rows, metric, cost, vary, at, tol, as_json: bool) -> None:
    """compare --metric M --at COST / --tol T: series ranked by error at a cost, and cost to tolerance."""
    import json

    if not metric or len(metric) != 1:
        _fail("--at/--tol: needs exactly one --metric (the error to rank by), e.g. --metric exact_w2")
    try:
        ranked = cmp.cost_rank(rows, metric[0], cost=cost, vary=vary, at=at, tol=tol)
    except DifflabError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(ranked, indent=2, sort_keys=True, default=str))
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


@app.command()
def sweep(
    spec: Annotated[Path, typer.Argument(help="A sweep spec YAML: sampler, set, grid, zip (see the README).")],
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Runs at a time, each in its own process.")] = 1,
    dask: Annotated[str | None, typer.Option("--dask", metavar="ADDRESS", show_default=False,
                    help="Run on a Dask distributed cluster: a scheduler address (tcp://host:8786) or a "
                         "scheduler file; run files go to ./runs, which the workers must share. Extra: difflab[dask].")] = None,
) -> None:
    """Many sample runs from one spec: a grid (and zipped lists) over any options and seeds.

    Every run is validated first; runs whose file exists are skipped (an interrupted sweep resumes);
    failures are listed at the end. Exit 0 if every run completed (or existed), 1 if any failed."""
    from difflab import sweep as sw

    if jobs < 1:
        _fail(f"--jobs: must be positive, got {jobs}")
    if dask is not None and jobs != 1:
        _fail("--jobs: not with --dask (the cluster's workers decide how many runs go at a time)")
    try:
        text = spec.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{spec}: cannot read the sweep spec: {exc}")
    try:
        runs = sw.expand(text, str(spec))
    except DifflabError as exc:
        _fail(str(exc))
    todo, skipped, errors = sw.preflight(runs)
    if errors:
        for e in errors:
            typer.echo(f"error: {spec}: {e}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    typer.echo(f"{len(runs)} runs: {len(todo)} to run, {len(skipped)} already done (skipped)", err=True)
    results = {}
    progress, on_done = _sweep_display(len(todo), sys.stderr.isatty())

    def done(run, result) -> None:
        results[run.index] = result
        on_done(f"{result[1]:>11s}  {result[0] or sw.describe(run)}", result[1] == "failed")

    try:
        with progress:
            sw.run_all(todo, done, jobs=jobs, dask=dask)
    except DifflabError as exc:  # --dask: no distributed installed, or no scheduler there
        _fail(str(exc))
    failed = [(run, results[run.index][2]) for run, _ in todo if results[run.index][1] == "failed"]
    diverged = [results[run.index][0] for run, _ in todo if results[run.index][1] == "diverged"]
    for path in sorted(p for p, *_ in results.values() if p):
        typer.echo(path)
    if diverged:
        typer.echo(f"{len(diverged)} run(s) diverged (their files say so): {', '.join(diverged)}", err=True)
    if failed:
        typer.echo(f"{len(failed)} run(s) failed:", err=True)
        for run, message in failed:
            typer.echo(f"  run {run.index} ({sw.describe(run)}): {message}", err=True)
        raise typer.Exit(1)


def _sweep_display(total: int, live: bool):
    """One display for a whole sweep, however many processes run it: (context, on_done(line, failed)).

    On a terminal, a bar of finished runs (with the failures so far) under the lines of finished
    runs; otherwise just the lines, one per finished run, on stderr."""
    import contextlib

    if not live or total == 0:
        return contextlib.nullcontext(), lambda line, failed: typer.echo(line, err=True)
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


@app.command()
def plot(
    paths: Annotated[list[Path], typer.Argument(help="Run files.", show_default=False)],
    kind: Annotated[str | None, typer.Option("--kind", "-k", help="samples, trajectories, metrics, pmf or fit. Default: fit with --by, pmf for discrete runs, else samples.", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Figure file, .png or .pdf. Default: plots/<first run>-<kind>.png.", show_default=False)] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", help="metrics: the series to draw (repeatable; default all); fit: the one metric.", show_default=False)] = None,
    by: Annotated[str | None, typer.Option("--by", help="fit: the parameter on the x axis (as compare --by).", show_default=False)] = None,
    dpi: Annotated[int, typer.Option("--dpi", help="Pixels per inch (a panel is 4.5 x 4 inches).")] = 100,
) -> None:
    """Figures of runs against the exact target: samples over the density, trajectories, metric
    series, a discrete pmf, or error against a parameter with its fitted slope (extra difflab[plot])."""
    from difflab import plot as plot_mod

    _write_from_runs(paths, lambda: plot_mod.render(paths, kind, out, by=by, metric=tuple(metric or ()), dpi=dpi),
                     out or "plots/")


def _write_from_runs(paths, write, where) -> None:
    """Run ``write()`` (which reads the run files at ``paths`` and writes one file), print the file
    it wrote; bad input exits 2 with one line, a failed write 1."""
    from difflab.errors import RunFileError

    missing = [p for p in paths if not p.is_file()]
    if missing:
        _fail(f"{missing[0]}: no such run file")
    try:
        written = write()
    except (DifflabError, RunFileError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{where}: could not write: {exc}", code=1)
    typer.echo(str(written))


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="A run file.", show_default=False)],
    to: Annotated[str, typer.Option("--to", help="Format: netcdf (an ArviZ InferenceData layout).")] = "netcdf",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File to write. Default: the run's name with .nc.", show_default=False)] = None,
    force: Force = False,
) -> None:
    """Write a run in another format: netCDF in ArviZ's InferenceData layout (extra difflab[export])."""
    from difflab import export as export_mod

    _write_from_runs([run], lambda: export_mod.export(run, out, to, force=force), out or run.with_suffix(".nc"))


@app.command()
def targets() -> None:
    """List the shipped targets (use them by name with --target)."""
    from rich.console import Console
    from rich.table import Table

    from difflab.config import build_target, parse_target, shipped_targets

    table = Table()
    for c in ("name", "kind", "dim", "components / states", "description"):
        table.add_column(c)
    for name, text in shipped_targets().items():
        spec = parse_target(text, f"{name}.yaml (shipped)", name)
        t = build_target(spec)
        first = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#")), "")
        size = f"{t.n_states} states" if spec.discrete else str(t.n_components)
        table.add_row(name, spec.kind, str(t.dim), size, first)
    Console().print(table)


@app.command()
def show(run: Annotated[Path, typer.Argument(help="A run file.")]) -> None:
    """Print one run's identity, parameters and final metrics."""
    from rich.console import Console
    from rich.table import Table

    from difflab.compare import fmt
    from difflab.io import read_run

    try:
        rec = read_run(run)
    except DifflabError as exc:
        _fail(str(exc))
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
    for k, v in sorted(rec.summary.items()):
        table.add_row(k, fmt(v))
    Console().print(table)


def _is(exc: BaseException, name: str) -> bool:
    """Match the CLI framework's exceptions by class name (Typer vendors click in recent versions)."""
    return any(c.__name__ == name for c in type(exc).__mro__)


def main() -> None:
    """Entry point. Usage errors (unknown command or option, unparsable value) become one line, exit 2."""
    argv = sys.argv[1:]
    samplers = sample_app.registered_commands
    # Typer turns every registered command into a click command on each call; the samplers' are
    # most of that, so only the one invoked is built (all of them for `difflab sample --help`).
    if not argv or argv[0] != "sample":
        sample_app.registered_commands = []
    elif len(argv) > 1 and any(c.name == argv[1] for c in samplers):
        sample_app.registered_commands = [c for c in samplers if c.name == argv[1]]
    try:
        code = _run()
    except BrokenPipeError:  # e.g. `difflab compare runs/* | head`: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    finally:
        sample_app.registered_commands = samplers
    sys.exit(code if isinstance(code, int) else 0)


def _run():
    try:
        return app(standalone_mode=False)
    except Exception as exc:
        if _is(exc, "NoArgsIsHelpError"):
            typer.echo(exc.format_message())
            code = 0
        elif _is(exc, "UsageError"):
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "difflab"
            typer.echo(f"error: {where}: {exc.format_message()} (see '{where} --help')", err=True)
            code = EXIT_BAD_INPUT
        elif _is(exc, "Exit"):
            code = exc.exit_code
        elif _is(exc, "Abort"):
            code = EXIT_INTERRUPTED
        else:
            raise
        return code

