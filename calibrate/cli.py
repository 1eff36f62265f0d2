"""`calibrate`: the measuring side. Thin click commands over the store and the importers; library errors become
one-line messages here, in one place."""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime, timezone

import click

from estimator.errors import PlannerError


class _Group(click.Group):
    def invoke(self, ctx):
        from calibrate.importers import ImportFailure
        from store.errors import StoreError

        try:
            return super().invoke(ctx)
        except (StoreError, PlannerError, ImportFailure) as err:
            raise click.ClickException(str(err)) from None


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


def _labels(values: tuple[str, ...]) -> dict:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: labels are KEY=VALUE")
        out[key] = value
    return out


def run_filters(f):
    options = [
        click.option("--model", default=None), click.option("--gpu", default=None),
        click.option("--vllm-version", default=None),
        click.option("--status", type=click.Choice(["ok", "failed", "interrupted", "running"]), default=None),
        click.option("--benchmark", type=click.Choice(["serve", "throughput", "startup"]), default=None),
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
@click.option("--num-gpus", type=int, default=None)
@click.option("--tensor-parallel-size", type=int, default=None)
@click.option("--pipeline-parallel-size", type=int, default=None)
@click.option("--max-model-len", type=int, default=None)
@click.option("--max-num-seqs", type=int, default=None)
@click.option("--max-num-batched-tokens", type=int, default=None)
@click.option("--dtype", default=None)
@click.option("--quantization", default=None)
@click.option("--kv-cache-dtype", default=None)
@click.option("--input-len", type=int, default=None, help="Prompt tokens (vllm bench throughput files).")
@click.option("--output-len", type=int, default=None, help="Output tokens (vllm bench throughput files).")
@click.option("--vllm-version", default=None)
@click.option("--label", "labels", multiple=True, help="KEY=VALUE stored with every run; repeatable.")
def import_(paths, db, model, gpu, num_gpus, input_len, output_len, vllm_version, labels, **config) -> None:
    """Import benchmark results: vllm bench serve/throughput JSON, --append-result JSON lines, vllm bench sweep
    directories, guidellm reports, or the documented CSV. Each file is one transaction; importing a file again
    adds nothing."""
    from calibrate.importers import ImportFailure, Overrides, expand, parse_file
    from store import Store

    store = Store.open(db)
    over = Overrides(model=model, gpu=gpu, num_gpus=num_gpus, input_len=input_len, output_len=output_len,
                     vllm_version=vllm_version, labels=_labels(labels),
                     config={k: v for k, v in config.items() if v is not None})
    failures = 0
    for path in expand(list(paths)):
        try:
            parsed = parse_file(path, over)
        except ImportFailure as err:
            click.echo(f"error: {err}", err=True)
            failures += 1
            continue
        added = store.import_runs(parsed.records, parsed.content_hash)
        click.echo(f"{parsed.path}: {added} run(s) imported" if added else
                   f"{parsed.path}: already imported, nothing added")
    if failures:
        raise click.ClickException(f"{failures} file(s) could not be imported; nothing from them was written")


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
        click.echo(json.dumps([r.to_dict() for r in found], indent=2))
        return
    click.echo(f"{'id':>5}  {'status':<11} {'benchmark':<10} {'model':<40} {'gpu':<14} {'output/s':>10}  started")
    for r in found:
        click.echo(_row(r))


@runs.command("show")
@click.argument("run_id", type=int)
@db_option
@click.option("--json", "as_json", is_flag=True)
def runs_show(run_id, db, as_json) -> None:
    """One run in full."""
    from store import Store

    record = Store.open(db).get_run(run_id)
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2))
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


@runs.command("delete")
@click.argument("run_ids", type=int, nargs=-1, required=True)
@db_option
def runs_delete(run_ids, db) -> None:
    """Delete runs (and their memory samples)."""
    from store import Store

    n = Store.open(db).delete_runs(list(run_ids))
    click.echo(f"{n} run(s) deleted")
    if n < len(set(run_ids)):
        raise click.ClickException(f"{len(set(run_ids)) - n} of the ids did not exist")


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
            stream.write(json.dumps([r.to_dict() for r in found], indent=2) + "\n")
        else:
            writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for r in found:
                writer.writerow(csv_row(r))
    finally:
        if output:
            stream.close()
