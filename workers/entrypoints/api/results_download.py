"""A results download, for both results routes (GET /campaigns/{id}/results and /campaigns/{id}/runs/results)
and the console: the one results schema as CSV or JSON Lines, streamed from a server-side cursor on its
own connection, so any size takes bounded memory. A missing campaign or run is a 404 before the first byte."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import StreamingResponse

from campaigns.db import connect
from campaigns.results_export import require_results, result_chunks
from campaigns.results_schema import FILE_SUFFIXES, MEDIA_TYPES, ResultFormat, format_for_accept
from workers.entrypoints.api.deps import run_db

FormatQuery = Annotated[ResultFormat | None, Query(
    alias="format",
    description="csv, or jsonl (JSON Lines: an object per row). Without it the Accept header decides "
                "(application/jsonl or application/x-ndjson: JSON Lines), else CSV.")]
RESULTS_CONTENT: dict[int | str, dict[str, Any]] = {200: {
    "content": {"text/csv": {}, "application/jsonl": {}},
    "description": "The input row's own columns, then the call's fields (README, \"Results\")"}}


def chosen_format(fmt: ResultFormat | None, accept: str | None) -> ResultFormat:
    """`?format=` if given, else what the Accept header asks for."""
    return fmt if fmt is not None else format_for_accept(accept)


def _chunks(campaign_id: int, fmt: ResultFormat, run: int | None, all_runs: bool) -> Iterator[bytes]:
    with connect() as conn:
        for chunk in result_chunks(conn, campaign_id, fmt, run=run, all_runs=all_runs):
            yield chunk.encode()


async def results_response(campaign_id: int, fmt: ResultFormat, *, run: int | None = None,
                           all_runs: bool = False, name: str = "results") -> StreamingResponse:
    """The campaign's results in `fmt` (see campaigns.results_export.result_chunks), as an attachment."""
    await run_db(require_results, campaign_id, run)
    filename = f"campaign-{campaign_id}-{name}.{FILE_SUFFIXES[fmt]}"
    return StreamingResponse(_chunks(campaign_id, fmt, run, all_runs), media_type=MEDIA_TYPES[fmt],
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})
