"""The one results schema every export uses (CLI, API, console; CSV and JSON Lines): the uploaded row's own
columns first, in the upload's order, then the call's fields, CALL_FIELDS. Pure: no I/O.

A row reports one destination in one run: by default its latest run (one row per destination), per run
one row for each run it was dialed in or finished without a call (screened by DNC, cancelled, expired).
`status` and `outcome` are the destination's own in that run: for its latest run, `outcome` is what it is
now (`dnc` when screened today); `call_run` to `recording_url` describe one call, the last attempt of that
run or, when the run made none, the last attempt of an earlier run, named by `call_run`. So a destination
screened by DNC in run 2 shows `run` 2, `outcome` dnc, `run_attempts` 0, and run 1's call beside it
(`call_run` 1, `call_outcome`, its ids and `provider_status`).

An input column named like a call field keeps its values under `input_<name>` (prefixed again until the
name is free): the call fields' names never change, so a tool reading them works for any upload.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

CALL_FIELDS = (
    "line",            # the row's line in the uploaded file (the header is line 1)
    "number",          # the number as dialed (E.164, or a sip: URI)
    "status",          # the destination's status now (pending, done, dnc, cancelled, expired…)
    "run",             # the run this row reports (default results: the destination's latest run)
    "outcome",         # the destination's outcome in that run (latest run: now, e.g. dnc when screened)
    "attempts",        # attempts made at this destination over every run
    "run_attempts",    # attempts made at it in this row's run
    "call_run",        # the run of the call described by the fields below (empty: never called)
    "call_outcome",    # that call's outcome
    "call_account",    # the name of the account that placed it (a campaign with fallbacks uses several)
    "request_uuid", "call_uuid", "provider_status", "hangup_cause", "duration", "billed_duration",
    "answer_at", "end_at",
    "spoken_text",     # the message as rendered for that call
    "recording_url",   # its recording(s), space-separated
)
INPUT_CLASH_PREFIX = "input_"


class ResultFormat(StrEnum):
    """How results are written: CSV (spreadsheet-safe) or JSON Lines (one JSON object per row)."""

    CSV = "csv"
    JSONL = "jsonl"


MEDIA_TYPES = {ResultFormat.CSV: "text/csv; charset=utf-8", ResultFormat.JSONL: "application/jsonl"}
FILE_SUFFIXES = {ResultFormat.CSV: "csv", ResultFormat.JSONL: "jsonl"}
# Accept values that ask for JSON Lines (the API's `?format=` wins over Accept).
JSONL_MEDIA_TYPES = ("application/jsonl", "application/x-ndjson", "application/x-jsonlines")


def header(input_columns: Sequence[str]) -> tuple[str, ...]:
    """The export's column names: the input's (renamed where they clash with a call field), then the call
    fields."""
    taken = set(CALL_FIELDS)
    names: list[str] = []
    for name in input_columns:
        while name in taken:
            name = INPUT_CLASH_PREFIX + name
        taken.add(name)
        names.append(name)
    return (*names, *CALL_FIELDS)


def format_for_accept(accept: str | None) -> ResultFormat:
    """The format an Accept header asks for: JSON Lines if it names a JSON Lines type, else CSV."""
    wanted = (accept or "").lower()
    return ResultFormat.JSONL if any(t in wanted for t in JSONL_MEDIA_TYPES) else ResultFormat.CSV


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def jsonl_lines(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Rows as JSON Lines: an object per row, keys in column order; null for an empty field."""
    return "".join(
        orjson.dumps(dict(zip(columns, row, strict=True)), default=_json_default).decode() + "\n"
        for row in rows
    )
