"""The ``difflab`` command line: parse, call, print, choose exit codes. Nothing else lives here.

Exit codes: 0 complete; 1 a file could not be written; 2 bad input (one line on stderr, nothing
written); 3 the run diverged, 130 interrupted by Ctrl-C, 143 by SIGTERM (its file says so). Heavy modules (numpy, scipy, h5py) are imported inside the commands, so ``difflab --help`` is quick.
"""

from __future__ import annotations

import dataclasses
import keyword
import os
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
    add_completion=True,  # --install-completion, --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rendering it with rich costs ~0.2 s of imports per call
)
sample_app = typer.Typer(help="Run a sampler on a target and write a run file.", no_args_is_help=True,
                         rich_markup_mode=None)
app.add_typer(sample_app, name="sample")

EXIT_BAD_INPUT, EXIT_DIVERGED = 2, 3


def _print_version(value: bool) -> None:
    if value:
        from difflab.cli.runner import print_version

        raise typer.Exit(print_version())


@app.callback()
def _top(version: Annotated[bool, typer.Option("--version", help="Print difflab's version and exit.", is_eager=True,
                                               callback=_print_version)] = False) -> None: ...


@sample_app.callback(invoke_without_command=True)
def _sample_group(
    ctx: typer.Context,
    spec: Annotated[str | None, typer.Option("--spec", metavar="RUN.yaml", show_default=False,
                    help="Run the spec's sampler (its sampler: key) with the spec's settings: "
                         "difflab sample --spec run.yaml. With a sampler command, give --spec after it.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", show_default=False, help="With --spec: the run file.")] = None,
    force: Annotated[bool, typer.Option("--force", help="With --spec: overwrite an existing run file.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="With --spec: print only the run file's path.")] = False,
) -> None:
    if ctx.invoked_subcommand is not None:
        for flag, on in (("--spec", spec is not None), ("--out", out is not None), ("--force", force), ("--quiet", quiet)):
            if on:
                _fail(f"{flag}: give it after the sampler (difflab sample {ctx.invoked_subcommand} {flag} ...)")
        return
    if spec is None:
        raise typer.Exit(typer.echo(ctx.get_help()) or 0)
    from difflab.run.settings import read_run_spec
    from difflab.samplers import SAMPLERS

    sampler = _or_fail(read_run_spec, spec)[0]
    if sampler not in SAMPLERS:
        _fail(f"{spec}: sampler: expected one of {', '.join(SAMPLERS)}{'' if sampler else ' (the spec must name one)'}"
              f", got {sampler!r}")
    # every option at its default, then the spec's settings
    _sample(sampler, ctx, {**{o.name: o.default for o in SAMPLERS[sampler].all_options}, **_SETTINGS_DEFAULTS,
                           "spec": spec, "out": out, "force": force, "quiet": quiet})


# ---------------------------------------------------------------- the sampler commands, from the registry
# Options of the call itself (not of the run): how settings reach it, and what it prints.
_SETTINGS = (
    ("set_", list[str] | None, typer.Option("--set", metavar="KEY=VALUE", show_default=False,
     help="Set any option of this command by its name, e.g. --set step_size=0.05 (repeatable).")),
    ("target_set", list[str] | None, typer.Option("--target-set", metavar="PATH=VALUE", show_default=False,
     help="Override a target YAML key by its dotted path, e.g. --target-set ring.radius=6 (repeatable).")),
    ("spec", str | None, typer.Option("--spec", metavar="RUN.yaml", show_default=False,
     help="A run spec: a YAML mapping of this command's options (and target_set:). Flags override it.")),
    ("quiet", bool, typer.Option("--quiet", "-q", help="No progress bar and no summary table; print only the path.")),
    ("force", bool, typer.Option("--force", help="Overwrite an existing run file (= --if-exists overwrite).")),
    ("json", bool, typer.Option("--json", help="Print the run (path, status, params, summary, warnings) as JSON.")),
    ("no_cache", bool, typer.Option("--no-cache", help="Compute the exact-draw floors afresh; read and write no "
     "floor cache (the floors are the same: their draws are seeded by the target).")),
    ("cache_dir", Path | None, typer.Option("--cache-dir", metavar="DIR", show_default=False, help="The floor cache's "
     "folder (default: $DIFFLAB_CACHE_DIR, else $XDG_CACHE_HOME/difflab or ~/.cache/difflab).")),
    ("if_exists", str, typer.Option("--if-exists", metavar="[error|skip|overwrite]", help="When the run file exists: "
     "error (exit 2), skip (keep a finished run, print its path; re-run an interrupted one) or overwrite.")),
)
_SETTINGS_DEFAULTS = {n.rstrip("_"): False if t is bool else "error" if n == "if_exists" else None for n, t, _ in _SETTINGS}


def _param(name: str) -> str:
    """The Python parameter of an option key (``class`` -> ``class_``)."""
    return name + "_" if keyword.iskeyword(name) else name


def _typer_option(o):
    optional = o.default is None and o.typ is not bool
    info = typer.Option(*((o.flag, o.short) if o.short else (o.flag,)), help=o.help, show_default=not optional,
                        metavar=f"[{'|'.join(o.choices)}]" if o.choices else None)  # choices in --help, not <str>
    return Annotated[(o.typ | None) if optional else o.typ, info]


def _command(entry):
    """The ``difflab sample NAME`` function of a registry entry: its signature is the entry's
    options (defaults, help and types stated there once), then the settings options."""
    import inspect
    from dataclasses import replace

    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("ctx", kw, annotation=typer.Context)]
    # steps whose default depends on other options (steps_for) stay None until resolved
    options = [replace(o, default=None) if o.name == "steps" and entry.steps_for else o for o in entry.all_options]
    params += [inspect.Parameter(_param(o.name), kw, default=o.default, annotation=_typer_option(o))
               for o in options if o.name != "force"]
    params += [inspect.Parameter(name, kw, default=_SETTINGS_DEFAULTS[name.rstrip("_")], annotation=Annotated[t, info])
               for name, t, info in _SETTINGS]

    def command(ctx: typer.Context, **kwargs) -> None:
        _sample(entry.name, ctx, {name.rstrip("_"): value for name, value in kwargs.items()})

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__, command.__name__ = entry.help, entry.name
    return command


def _register_samplers() -> None:
    """Every sampler's command, or only the one the entry point was asked to run (its module alone
    is imported then)."""
    from difflab.cli import runner

    if runner.ONLY == "":  # another command: no sampler is read
        return
    from difflab.samplers import SAMPLERS

    names = [runner.ONLY] if runner.ONLY is not None and SAMPLERS.offers(runner.ONLY) else list(SAMPLERS)
    for name in names:
        try:
            entry = SAMPLERS[name]
        except DifflabError as exc:  # an installed plug-in that does not load: it alone is left out
            if name != runner.ONLY:
                typer.echo(f"warning: {exc}; 'difflab sample {name}' is unavailable", err=True)
            sample_app.command(name, hidden=True, add_help_option=False, context_settings={
                "ignore_unknown_options": True, "allow_extra_args": True})(_unloadable(str(exc)))
            continue
        sample_app.command(name)(_command(entry))


def _unloadable(message: str):
    """The command of a plug-in that did not load: whatever it is given, the load error, exit 2."""
    def command(ctx: typer.Context) -> None:
        _fail(message)
    return command


def main() -> None:
    """Run the CLI (``difflab.cli.runner.run`` turns usage errors into one line and exit 2)."""
    from difflab.cli.runner import run

    run(app, sample_app)


def _fail(message: str, code: int = EXIT_BAD_INPUT):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _or_fail(fn, *args):
    """fn(*args), a DifflabError becoming one line and exit 2."""
    try:
        return fn(*args)
    except DifflabError as exc:
        _fail(str(exc))


def _typed(ctx, sampler: str, key: str) -> bool:
    """The user gave this option's flag (not its default)."""
    source = ctx.get_parameter_source(_param(key)) if ctx.command.name == sampler else None
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _sample(sampler: str, ctx, args: dict) -> None:
    """Run one sampler command: ``args`` are its options by key; the common ones become
    SampleOptions fields, the rest the sampler's own options."""
    from difflab.cli import report
    from difflab.run import sampling as sample_mod
    from difflab.run import settings

    quiet, if_exists, as_json = args["quiet"], args.pop("if_exists", "error"), args.pop("json", False)
    no_cache, cache_dir = args.pop("no_cache", False), args.pop("cache_dir", None)
    if no_cache and cache_dir is not None:
        _fail("--no-cache: not with --cache-dir")
    try:
        args = settings.apply(sampler, args, typed=lambda key: _typed(ctx, sampler, key))
        opts = sample_mod.options_from_args(sampler, args)
        opts = dataclasses.replace(opts, cache=False if no_cache else cache_dir or True)
        opts, spec, target, params, path, finished = sample_mod.prepare_if_exists(opts, if_exists)
    except DifflabError as exc:
        _fail(str(exc))
    if finished:  # --if-exists skip: the run file holds a finished run
        return typer.echo(str(path) if quiet or as_json else f"skipped: {path} holds a finished run (--if-exists skip)")
    show_progress = not (quiet or as_json) and sys.stderr.isatty()
    # SIGTERM ends a run like Ctrl-C (the file is written with status = interrupted), exit 143 not 130
    late, late_signal, got = None, False, []
    previous = signal.signal(signal.SIGTERM, lambda s, f: (got.append(s), signal.default_int_handler(s, f)))
    try:
        run = sample_mod.execute(opts, spec=spec, target=target, params=params, path=path,
                                 progress=report.progress if show_progress else None)
    except sample_mod.LateSignal as exc:  # arrived after sampling: the finished run was saved first
        run, late, late_signal = exc.run, exc.signum, True
    except KeyboardInterrupt:  # before the sampling loop (set-up): nothing was run, nothing written
        if not got:
            raise  # Ctrl-C: 130
        typer.echo("interrupted before the run started; nothing written", err=True)
        raise typer.Exit(128 + got[0]) from None
    except OSError as exc:  # e.g. the disk filled up while writing: no partial file is left
        _fail(f"{path}: could not write the run file: {exc}", code=1)
    except DifflabError as exc:  # found while building the run's references, before any writing
        _fail(str(exc))
    finally:
        signal.signal(signal.SIGTERM, previous)
    if run.path != str(path):  # another writer took the name while this run ran: nothing replaced
        typer.echo(f"warning: {path} was written by another process while this run ran; this run is saved as "
                   f"{run.path}", err=True)
        path = Path(run.path)
    report.after_run(path, run, quiet, as_json)
    stopped_by = 128 + (late or (got[0] if got else signal.SIGINT))  # 130 Ctrl-C, 143 SIGTERM
    if late_signal and run.status == "interrupted" and not run.summary:
        typer.echo(f"interrupted while summarising; {path} holds the run's {run.steps_done} steps and no metrics "
                   f"(status interrupted: run it again to judge it)", err=True)
        raise typer.Exit(stopped_by)
    if late_signal:
        what = "the complete run" if run.status == "complete" else f"the run ({run.status}, {run.steps_done} steps)"
        typer.echo(f"interrupted while writing; {path} holds {what}", err=True)
        raise typer.Exit(stopped_by)
    if run.status == "diverged":
        typer.echo(f"warning: the run diverged at step {run.attrs['diverged_step']} (non-finite values); "
                   f"{path} holds the last finite state", err=True)
        raise typer.Exit(EXIT_DIVERGED)
    if run.status == "interrupted":
        typer.echo(f"interrupted after {run.steps_done} steps; {path} holds the state reached", err=True)
        raise typer.Exit(stopped_by)


Force = Annotated[bool, typer.Option("--force", help="Overwrite an existing run file.")]
Json = Annotated[bool, typer.Option("--json", help="Print it as JSON (strict: non-finite numbers as strings).")]
_register_samplers()

@app.command()
def compare(
    paths: Annotated[list[Path], typer.Argument(help="Run files, e.g. runs/*.")],
    sort: Annotated[str | None, typer.Option("--sort", help="Sort rows by this column (ascending).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every field of every run as JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the table as CSV.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="One table per sampler and target at its natural width, however wide.")] = False,
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", help="Show these summary keys instead of the default metric columns (repeatable), e.g. -m tilted_sliced_w2 -m nfe.", show_default=False)] = None,
    by: Annotated[str | None, typer.Option("--by", help="Group by this parameter within each series (the other differing parameters), aggregating --metric over seeds.", show_default=False)] = None,
    fit: Annotated[bool, typer.Option("--fit", help="With --by: fit the log-log slope of the metric against the parameter, with a 95% confidence interval.")] = False,
    at: Annotated[float | None, typer.Option("--at", help="Rank series by --metric at this cost (log-log interpolated; see --cost).", show_default=False)] = None,
    tol: Annotated[float | None, typer.Option("--tol", help="Rank series by the cost at which --metric first reaches this tolerance.", show_default=False)] = None,
    cost: Annotated[str, typer.Option("--cost", help="With --at/--tol: the cost, a summary key (nfe: score evaluations per particle) or wall_time_s.")] = "nfe",
    vary: Annotated[str, typer.Option("--vary", help="With --at/--tol: the parameter that sets the cost within a series.")] = "steps",
) -> None:
    """One row per run: the parameters that differ between the runs and the final metrics."""
    from difflab.cli import report
    from difflab.results import analysis as cmp

    paths = [p for p in paths if not (p.name == ".gitkeep" or p.name.startswith("."))]
    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:  # a typo, or a shell pattern that matched nothing (the shell passes it on as it is)
        _fail(f"{missing[0]}: no such run file{' (a pattern that matched no file)' if any(c in str(missing[0]) for c in '*?[') else ''}")
    rows = cmp.load_rows(paths)
    if (by is not None or fit) and (at is not None or tol is not None):
        _fail("--at/--tol: not with --by (rank runs or fit an order, one at a time)")
    _or_fail(report.compare, cmp, rows, {"sort": sort, "as_json": as_json, "as_csv": as_csv, "wide": wide, "metric": metric, "by": by,
                                         "fit": fit, "at": at, "tol": tol, "cost": cost, "vary": vary})
    bad = [r for r in rows if "error" in r]  # their rows say why; the readable runs were still compared
    if bad:
        _fail(f"{len(bad)} of {len(rows)} files {'is' if len(bad) == 1 else 'are'} not a readable run "
              f"(first: {bad[0]['error']})")


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
    from difflab.cli import report
    from difflab.run import sweep as sw

    if jobs < 1:
        _fail(f"--jobs: must be positive, got {jobs}")
    if dask is not None and jobs != 1:
        _fail("--jobs: not with --dask (the cluster's workers decide how many runs go at a time)")
    from difflab import yamlio

    text = _or_fail(yamlio.read, spec, "the sweep spec")
    runs = _or_fail(sw.expand, text, str(spec))
    todo, skipped, errors = sw.preflight(runs)
    if errors:
        for e in errors:
            typer.echo(f"error: {spec}: {e}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    typer.echo(f"{len(runs)} runs: {len(todo)} to run, {len(skipped)} already done (skipped)", err=True)
    results = {}
    progress, on_done = report.sweep_display(len(todo), sys.stderr.isatty())

    def done(run, result) -> None:
        results[run.index] = result
        on_done(f"{result[1]:>11s}  {sw.describe(run)}" + (f"  {result[0]}" if result[0] else ""), result[1] == "failed")

    with progress:  # a DifflabError here: --dask without distributed installed, or no scheduler there
        stopped = _or_fail(lambda: sw.run_until_stopped(todo, done, jobs=jobs, dask=dask))
    failed = report.sweep_outcome(sw, todo, results, stopped=bool(stopped))
    if stopped:
        raise typer.Exit(128 + stopped)  # 130 after Ctrl-C, 143 after SIGTERM
    if failed:
        raise typer.Exit(1)


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
    from difflab.results import plot as plot_mod

    _write_from_runs(paths, lambda: plot_mod.render(paths, kind, out, by=by, metric=tuple(metric or ()), dpi=dpi),
                     out or "plots/")


def _write_from_runs(paths, write, where) -> None:
    """Run ``write()`` (which reads the run files at ``paths`` and writes one file), print the file
    it wrote; bad input exits 2 with one line, a failed write 1."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        _fail(f"{missing[0]}: no such run file")
    try:
        written = write()
    except DifflabError as exc:  # RunFileError included
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{where}: could not write: {exc}", code=1)
    typer.echo(str(written))


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="A run file.", show_default=False)],
    to: Annotated[str, typer.Option("--to", help="Format: netcdf (an ArviZ InferenceData layout).")] = "netcdf",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File to write. Default: exports/<run name>.nc (not beside the run: compare runs/* reads run files).", show_default=False)] = None,
    force: Force = False,
) -> None:
    """Write a run in another format: netCDF in ArviZ's InferenceData layout."""
    from difflab.results import export as export_mod

    _write_from_runs([run], lambda: export_mod.export(run, out, to, force=force), out or export_mod.default_out(run))


@app.command()
def targets(as_json: Json = False) -> None:
    """List the shipped targets (use them by name with --target)."""
    from difflab.cli import report

    report.targets_table(as_json)


@app.command()
def cache(
    clear: Annotated[bool, typer.Option("--clear", help="Remove every entry (floors are recomputed when next needed).")] = False,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", metavar="DIR", show_default=False,
                                                   help="The cache's folder (default: as for sample).")] = None,
    as_json: Json = False,
) -> None:
    """Show the exact-draw floor cache (its folder, entries and size), or --clear it."""
    from difflab.cli import report
    from difflab.run.floors import FloorCache

    report.cache_table(FloorCache.of(cache_dir or True), clear, as_json)


@app.command()
def show(run: Annotated[Path, typer.Argument(help="A run file.")], as_json: Json = False) -> None:
    """Print one run's identity, parameters and final metrics."""
    from difflab.cli import report
    from difflab.run.io import read_run

    report.run_table(run, _or_fail(read_run, run), as_json)
