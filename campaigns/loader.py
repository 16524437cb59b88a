"""Loading a campaign from a CSV: stream rows -> normalise them in parallel -> COPY into Postgres.

One transaction per campaign: the campaign row (state 'loading'), every destination and every rejected
row commit together and the campaign becomes 'draft', or nothing remains. Memory stays constant: rows are
read in chunks with a bounded number in flight, and duplicates and DNC numbers are found by Postgres in a
TEMP staging table, never in a set held here.

Small files (under copy_chunks.PARALLEL_AFTER_ROWS rows) are normalised in this process; past that a
pool of parser processes (Settings.loader_workers, 0 = one per core) takes the chunks while this process
decodes the file and writes the COPY stream.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import psycopg
from psycopg.types.json import Jsonb

from campaigns.config import Settings, get_settings
from campaigns.copy_chunks import normalised_chunks
from campaigns.csv_source import CsvLayout, CsvLimits, CsvStream
from campaigns.db import connect
from campaigns.destination_kinds import destination_kinds
from campaigns.errors import InvalidRequest, NotFound
from campaigns.load_tally import add_load
from campaigns.numbers import (
    DEFAULT_BLOCKED_TYPES,
    NumberPolicy,
    RowLayout,
    check_region,
    normalise_caller_id,
    valid_timezone,
)
from campaigns.reports import LoadReport
from campaigns.states import CampaignState
from campaigns.store.loading import insert_loaded_destinations
from campaigns.templates import record_missing_variables, template_variables

STAGING_DDL = """
CREATE TEMP TABLE load_staging (
    line_no   INTEGER NOT NULL,
    raw_value TEXT NOT NULL,
    number    TEXT,
    variables JSONB,
    timezone  TEXT,
    reason    TEXT,
    detail    TEXT
) ON COMMIT DROP
"""
STAGING_COPY = ("COPY load_staging (line_no, raw_value, number, variables, timezone, reason, detail) "
                "FROM STDIN")

# Rows rejected while parsing go straight across; the others are ranked by number in one pass: the first
# line of a number becomes the destination (inserted in file order by
# campaigns.store.loading.insert_loaded_destinations, so dialing follows the file), later lines are
# duplicates, and a number on the DNC list (global, or the campaign's account's) is rejected on every line.
REJECT_PARSED_SQL = """
INSERT INTO rejected_row (campaign_id, line_no, raw_value, reason, detail)
SELECT %(campaign_id)s, line_no, raw_value, reason, detail FROM load_staging WHERE reason IS NOT NULL
ORDER BY line_no
"""
RANK_SQL = """
CREATE TEMP TABLE load_ranked ON COMMIT DROP AS
SELECT s.line_no, s.raw_value, s.number, s.variables, s.timezone,
       min(s.line_no) OVER (PARTITION BY s.number) AS first_line,
       (EXISTS (SELECT 1 FROM dnc_number d WHERE d.number = s.number)
        OR EXISTS (SELECT 1 FROM account_dnc_number a JOIN campaign c ON c.account_id = a.account_id
                   WHERE c.id = %(campaign_id)s AND a.number = s.number)) AS on_dnc
FROM load_staging s WHERE s.reason IS NULL
"""
REJECT_RANKED_SQL = """
INSERT INTO rejected_row (campaign_id, line_no, raw_value, reason, detail)
SELECT %(campaign_id)s, line_no, raw_value,
       CASE WHEN on_dnc THEN 'dnc' ELSE 'duplicate' END,
       CASE WHEN on_dnc THEN 'on the do-not-call list as ' || number
            ELSE 'same number as line ' || first_line END
FROM load_ranked WHERE on_dnc OR line_no <> first_line ORDER BY line_no
"""


@dataclass(frozen=True)
class LoadOptions:
    """What the caller decides about a campaign being loaded (the CLI flags, the API form fields)."""

    default_region: str = "US"
    phone_column: str | None = None
    account_id: int | None = None
    caller_id: str | None = None
    blocked_types: frozenset[str] = DEFAULT_BLOCKED_TYPES
    default_timezone: str = "UTC"
    workers: int | None = None  # None: Settings.loader_workers
    message: str | None = None  # template an answered call hears; rows lacking a variable get a warning


@dataclass(frozen=True)
class LoadProgress:
    """Where a load stands, passed to the progress callback after every chunk and at each phase."""

    phase: str  # 'reading', 'finishing' (dedupe, DNC, inserts), 'done'
    rows_read: int
    rows_rejected: int  # so far: duplicates and DNC are known only when finishing
    bytes_read: int
    bytes_total: int | None


ProgressCallback = Callable[[LoadProgress], None]


def worker_count(options: LoadOptions, settings: Settings) -> int:
    configured = options.workers if options.workers is not None else settings.loader_workers
    return configured if configured > 0 else (os.cpu_count() or 1)


def _open_source(source: BinaryIO | str | os.PathLike[str], stack: ExitStack) -> tuple[BinaryIO, int | None]:
    """The binary stream and its size when known (for the progress bar)."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            stream: BinaryIO = stack.enter_context(path.open("rb"))
        except FileNotFoundError:
            raise NotFound(f"no such file: {path}") from None
        return stream, path.stat().st_size
    try:
        size: int | None = os.fstat(source.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        size = None
    return source, size


def _checked_options(options: LoadOptions) -> tuple[NumberPolicy, str | None]:
    """The number policy and caller ID, or InvalidRequest naming the bad option."""
    try:
        region = check_region(options.default_region)
        caller_id = normalise_caller_id(options.caller_id, region) if options.caller_id else None
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if valid_timezone(options.default_timezone) is None:
        raise InvalidRequest(f"unknown time zone {options.default_timezone!r}")
    if options.message:
        template_variables(options.message)  # InvalidRequest naming the bad placeholder
    policy = NumberPolicy(default_region=region, blocked_types=frozenset(options.blocked_types),
                          default_timezone=options.default_timezone)
    return policy, caller_id


def _with_provider(conn: psycopg.Connection, options: LoadOptions, policy: NumberPolicy) -> NumberPolicy:
    """The policy with the campaign's account's provider and the kinds of destination it dials, so a row it
    cannot dial is rejected, naming it; the policy unchanged when no account is given."""
    if options.account_id is None:
        return policy
    account_id = options.account_id
    found = conn.execute("SELECT provider FROM provider_account WHERE id = %s", (account_id,)).fetchone()
    if found is None:
        raise NotFound(f"no provider account with id {options.account_id}")
    provider = str(found[0])
    return replace(policy, provider=provider, destination_kinds=destination_kinds(provider))


def _create_campaign(conn: psycopg.Connection, name: str, options: LoadOptions, policy: NumberPolicy,
                     caller_id: str | None, columns: tuple[str, ...]) -> int:
    """The campaign row, loading; `columns` (the file's, in order) lead each row of its results."""
    row = conn.execute(
        "INSERT INTO campaign (name, account_id, caller_id, default_region, provider_options, input_columns, "
        f"state) VALUES (%s, %s, %s, %s, %s, %s, '{CampaignState.LOADING.value}') RETURNING id",
        (name, options.account_id, caller_id, policy.default_region,
         Jsonb({"message": options.message} if options.message else {}), list(columns)),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _finish(conn: psycopg.Connection, campaign_id: int, rows_total: int) -> tuple[int, dict[str, int]]:
    """Dedupe, DNC, inserts; the campaign becomes 'draft'. Returns (rows loaded, rejects per reason)."""
    params = {"campaign_id": campaign_id}
    with conn.cursor() as cur:
        cur.execute(REJECT_PARSED_SQL, params)
        cur.execute(RANK_SQL, params)
        loaded = insert_loaded_destinations(conn, campaign_id=campaign_id)
        cur.execute(REJECT_RANKED_SQL, params)
        cur.execute("SELECT reason, count(*) FROM rejected_row WHERE campaign_id = %s GROUP BY reason "
                    "ORDER BY reason", (campaign_id,))
        by_reason = {reason: int(count) for reason, count in cur.fetchall()}
        cur.execute(f"UPDATE campaign SET state = '{CampaignState.DRAFT.value}', rows_total = %s, "
                    "rows_loaded = %s, rows_rejected = %s, updated_at = now() WHERE id = %s",
                    (rows_total, loaded, sum(by_reason.values()), campaign_id))
    return loaded, by_reason


def load_campaign_csv(*, name: str, source: BinaryIO | str | os.PathLike[str],
                      options: LoadOptions | None = None, progress: ProgressCallback | None = None,
                      settings: Settings | None = None) -> LoadReport:
    """Create campaign `name` from a CSV (a path or a binary file-like object, read as a stream).

    Raises BadInputFile (nothing stored) for a file that cannot be loaded, InvalidRequest for bad options,
    NotFound for a missing file or account. Rows that cannot be dialed (by anyone, or by the given account's
    provider) are stored as rejected_row.
    """
    started = time.monotonic()
    options = options or LoadOptions()
    settings = settings or get_settings()
    policy, caller_id = _checked_options(options)
    limits = CsvLimits(max_rows=settings.max_rows, max_field_bytes=settings.max_field_bytes,
                       max_line_bytes=settings.max_line_bytes)
    with ExitStack() as stack:
        stream, size = _open_source(source, stack)
        csv_stream = CsvStream(stream, phone_column=options.phone_column, limits=limits)
        layout = csv_stream.layout
        row_layout = RowLayout.build(layout.header, layout.phone_index, layout.timezone_index,
                                     layout.delimiter)
        conn = stack.enter_context(connect(settings.psycopg_url))
        policy = _with_provider(conn, options, policy)
        campaign_id = _create_campaign(conn, name, options, policy, caller_id, layout.header)
        conn.execute(STAGING_DDL)
        rows_total, rejected = _stream_into_staging(conn, csv_stream, row_layout, policy,
                                                    worker_count(options, settings), size, progress)
        if progress:
            progress(LoadProgress("finishing", rows_total, rejected, csv_stream.bytes_read, size))
        loaded, by_reason = _finish(conn, campaign_id, rows_total)
        warned = record_missing_variables(conn, campaign_id, options.message)
        add_load(conn, rows=rows_total, seconds=time.monotonic() - started)
        conn.commit()
    if progress:
        progress(LoadProgress("done", rows_total, sum(by_reason.values()), csv_stream.bytes_read, size))
    return _report(campaign_id, name, rows_total, loaded, by_reason, layout, time.monotonic() - started,
                   warned)


def _stream_into_staging(conn: psycopg.Connection, csv_stream: CsvStream, layout: RowLayout,
                         policy: NumberPolicy, workers: int, size: int | None,
                         progress: ProgressCallback | None) -> tuple[int, int]:
    rows_total = rejected = 0
    with conn.cursor() as cur, cur.copy(STAGING_COPY) as copy:
        for text, n, chunk_rejected in normalised_chunks(csv_stream, layout, policy, workers):
            copy.write(text)
            rows_total += n
            rejected += chunk_rejected
            if progress:
                progress(LoadProgress("reading", rows_total, rejected, csv_stream.bytes_read, size))
    return rows_total, rejected


def _report(campaign_id: int, name: str, rows_total: int, loaded: int, by_reason: dict[str, int],
            layout: CsvLayout, seconds: float, rows_with_warnings: int) -> LoadReport:
    return LoadReport(campaign_id=campaign_id, name=name, rows_total=rows_total, rows_loaded=loaded,
                      rows_rejected=sum(by_reason.values()), rejects_by_reason=by_reason,
                      encoding=layout.encoding, delimiter=layout.delimiter, phone_column=layout.phone_column,
                      seconds=seconds, columns=list(layout.header), rows_with_warnings=rows_with_warnings)
