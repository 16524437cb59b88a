"""`dialer prune --older-than 30d`: retention (campaigns.retention) from the command line, with a live count
of what each batch deleted."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from campaigns.db import connect
from campaigns.durations import parse_duration
from campaigns.retention import BATCH_ROWS, TABLES, prune

console = Console()
err = Console(stderr=True)


def _older_than(value: str) -> str:
    try:
        parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    return value


def prune_command(
    older_than: str = typer.Option(..., "--older-than", callback=_older_than, metavar="DURATION",
                                   help="Delete what was received before this long ago: 30d, 12h, 2w."),
    batch: int = typer.Option(BATCH_ROWS, min=1, max=100_000, help="Rows deleted per transaction."),
) -> None:
    """Delete applied call events of settled calls, refused callbacks and delivered webhooks older than
    --older-than.

    Kept whatever their age: calls' final state (attempt rows), events not yet applied or of calls still
    open, and events naming a recording (results exports read those). Each batch is its own transaction;
    an interrupted prune keeps what it deleted and can simply be run again."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} rows"),
                  TimeElapsedColumn(), console=err, transient=True) as progress:
        tasks = {table: progress.add_task(f"{table:<24}", total=None) for table in TABLES}
        with connect() as conn:
            report = prune(conn, older_than=parse_duration(older_than), batch=batch,
                           on_batch=lambda table, deleted: progress.advance(tasks[table], deleted))
    deleted = ", ".join(f"{report.deleted[t]:,} {t}" for t in TABLES)
    console.print(f"pruned what was received before {report.cutoff:%Y-%m-%d %H:%M:%S %Z}: {deleted} "
                  f"({report.batches} batches of at most {batch:,} rows)")
