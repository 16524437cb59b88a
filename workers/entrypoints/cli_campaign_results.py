"""`dialer campaign results`: a campaign's results in the one results schema (campaigns.results_schema), as
CSV or JSON Lines, to standard output or a file, streamed."""

from __future__ import annotations

import sys
from typing import TextIO

import typer
from rich.console import Console

from campaigns.db import connect
from campaigns.errors import InvalidRequest
from campaigns.results_export import require_results, write_results
from campaigns.results_schema import ResultFormat
from workers.entrypoints.cli_campaign import campaign_app

console = Console(stderr=True)


def chosen_format(fmt: ResultFormat | None, as_json: bool, run: int | None, all_runs: bool) -> ResultFormat:
    """The format asked for; InvalidRequest (one line) when the options contradict each other."""
    if run is not None and all_runs:
        raise InvalidRequest(f"--run {run} and --all-runs contradict each other: --run gives one run's rows, "
                             "--all-runs every run's; give one")
    if as_json and fmt is ResultFormat.CSV:
        raise InvalidRequest("--json and --format csv contradict each other: --json is --format jsonl; "
                             "give one")
    return ResultFormat.JSONL if as_json else (fmt or ResultFormat.CSV)


@campaign_app.command("results")
def results(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    out: str = typer.Option("-", "--out", help="File to write; - for standard output"),
    fmt: ResultFormat = typer.Option(None, "--format", case_sensitive=False,
                                     help="csv (the default) or jsonl: JSON Lines, an object per row"),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines (the same as --format jsonl)"),
    run: int = typer.Option(None, "--run", min=1, help="One run's rows (see `dialer campaign runs`)"),
    all_runs: bool = typer.Option(False, "--all-runs", help="A row per destination and run"),
) -> None:
    """Each destination's row from the uploaded file, then its outcome and last call (README, "Results")."""

    chosen = chosen_format(fmt, as_json, run, all_runs)
    with connect() as conn:
        require_results(conn, campaign_id, run)  # before --out is opened: a refused export leaves no file

        def write(handle: TextIO) -> None:
            write_results(conn, campaign_id, handle, chosen, run=run, all_runs=all_runs)

        if out == "-":
            write(sys.stdout)
        else:
            with open(out, "w", newline="", encoding="utf-8") as handle:
                write(handle)
    if out != "-":
        console.print(f"results written to {out}")
