"""Do-not-call lists: the global list (dnc_number) and one list per provider account (account_dnc_number).

Numbers are stored in E.164, normalised with the loader's rules (campaigns.numbers), so "(212) 555-0143"
and "+1 212 555 0143" are one entry. Imports stream the file through the loader's CSV reader and limits
(campaigns.csv_source): a bad file is refused whole, in one transaction, and a bad row is reported with its
line, never half-stored. The dial path reads both lists through one function,
campaigns.store.dial_store.dnc_numbers; the loader rejects listed numbers at load.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, TextIO, TypeGuard

import psycopg

from campaigns.csv_source import CsvLimits, CsvStream
from campaigns.errors import InvalidRequest
from campaigns.numbers import NumberPolicy, normalise_number
from campaigns.safe_csv import SafeCsvWriter

IMPORT_BATCH = 5000  # rows per COPY into the staging table
MAX_REPORTED_REJECTS = 100  # an import report lists this many bad lines; the count covers all of them
SOURCES = ("operator", "import", "keypress", "api")
PHONE_KEYS = frozenset("0123456789*#")


@dataclass(frozen=True)
class DncEntry:
    number: str
    account_id: int | None  # None: the global list
    reason: str | None
    source: str
    added_at: datetime


@dataclass
class ImportReport:
    """What an import did: numbers added, already listed, and the lines refused (line, value, why)."""

    added: int = 0
    already_listed: int = 0
    rejected: int = 0
    rejects: list[tuple[int, str, str]] = field(default_factory=list)


def normalise_dnc_number(raw: str, region: str = "US") -> str:
    """E.164 for a DNC entry, or InvalidRequest naming the value and why."""
    result = normalise_number(raw, NumberPolicy(default_region=region, blocked_types=frozenset()))
    if result.number is None:
        raise InvalidRequest(f"{raw!r} is not a phone number ({result.detail or result.reason})")
    if result.number.startswith("sip:"):
        raise InvalidRequest(f"{raw!r}: a do-not-call list holds phone numbers, not SIP URIs")
    return result.number


def is_opt_out_digit(value: object) -> TypeGuard[str]:
    """One key of a phone pad: what a campaign's `provider_options.opt_out_digit` may be."""
    return isinstance(value, str) and len(value) == 1 and value in PHONE_KEYS


def check_opt_out_digit(value: object) -> None:
    """InvalidRequest unless `value` is None (no opt-out offered) or one phone key."""
    if value is not None and not is_opt_out_digit(value):
        raise InvalidRequest(f"opt_out_digit must be one key of 0-9, * or #, not {value!r}")


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise InvalidRequest(f"source must be one of {', '.join(SOURCES)}, not {source!r}")


def add_number(
    conn: psycopg.Connection,
    raw: str,
    *,
    account_id: int | None = None,
    reason: str | None = None,
    source: str = "operator",
    region: str = "US",
) -> tuple[str, bool]:
    """(the E.164 number, True if it was not listed before). Idempotent."""
    _check_source(source)
    number = normalise_dnc_number(raw, region)
    if account_id is None:
        cur = conn.execute(
            "INSERT INTO dnc_number (number, reason) VALUES (%s, %s) ON CONFLICT DO NOTHING", (number, reason)
        )
    else:
        cur = conn.execute(
            "INSERT INTO account_dnc_number (account_id, number, reason, source) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            (account_id, number, reason, source),
        )
    return number, cur.rowcount == 1


def remove_number(
    conn: psycopg.Connection, raw: str, *, account_id: int | None = None, region: str = "US"
) -> bool:
    """True if the number was listed (and is no more)."""
    number = normalise_dnc_number(raw, region)
    if account_id is None:
        cur = conn.execute("DELETE FROM dnc_number WHERE number = %s", (number,))
    else:
        cur = conn.execute(
            "DELETE FROM account_dnc_number WHERE account_id = %s AND number = %s", (account_id, number)
        )
    return cur.rowcount > 0


def iter_entries(conn: psycopg.Connection, *, account_id: int | None = None) -> Iterator[DncEntry]:
    """Every entry of one list, in number order, streamed (a server-side cursor)."""
    if account_id is None:
        query = "SELECT number, NULL::bigint, reason, 'operator', added_at FROM dnc_number ORDER BY number"
        params: tuple[int, ...] = ()
    else:
        query = (
            "SELECT number, account_id, reason, source, added_at FROM account_dnc_number "
            "WHERE account_id = %s ORDER BY number"
        )
        params = (account_id,)
    with conn.transaction(), conn.cursor(name="dnc_export") as cur:
        cur.itersize = 10000
        cur.execute(query, params)
        for row in cur:
            yield DncEntry(*row)


def search_pattern(text: str) -> str:
    """The LIKE pattern of a search: the digits typed, anywhere in the number, or at its start after the
    country code's '+' when `text` begins with '+' ("+1646" finds +1 646 numbers, "0143" any number with
    0143 in it). Only digits are kept, so nothing typed is read as a pattern character."""
    digits = "".join(ch for ch in text if ch.isdigit())
    return f"+{digits}%" if text.strip().startswith("+") else f"%{digits}%"


def search_entries(conn: psycopg.Connection, text: str, *, account_id: int | None = None,
                   limit: int = 100) -> list[DncEntry]:
    """At most `limit` entries of one list (None: the global one) whose number matches `text`
    (search_pattern), in number order; an empty `text` matches every entry."""
    if account_id is None:
        query = ("SELECT number, NULL::bigint, reason, 'operator', added_at FROM dnc_number "
                 "WHERE number LIKE %(p)s ORDER BY number LIMIT %(limit)s")
    else:
        query = ("SELECT number, account_id, reason, source, added_at FROM account_dnc_number "
                 "WHERE account_id = %(a)s AND number LIKE %(p)s ORDER BY number LIMIT %(limit)s")
    rows = conn.execute(query, {"p": search_pattern(text), "a": account_id, "limit": limit}).fetchall()
    return [DncEntry(*row) for row in rows]


def write_csv(entries: Iterator[DncEntry], out: TextIO, *, header: bool = True) -> int:
    """number,reason,source,added_at: the export format, which `import` reads back; formula-safe (a reason
    such as `=1+2` is written `'=1+2`)."""
    writer = SafeCsvWriter(out)
    if header:
        writer.writerow(["number", "reason", "source", "added_at"])
    count = 0
    for entry in entries:
        writer.writerow([entry.number, entry.reason or "", entry.source, entry.added_at.isoformat()])
        count += 1
    return count


def import_file(
    conn: psycopg.Connection,
    source: BinaryIO,
    *,
    account_id: int | None = None,
    reason: str | None = None,
    region: str = "US",
    limits: CsvLimits | None = None,
    phone_column: str | None = None,
) -> ImportReport:
    """Stream a CSV with a phone column (the loader's names: phone, number, msisdn…) into one list.

    One transaction: a file refused whole (BadInputFile: too big, binary, no phone column) adds nothing.
    """
    stream = CsvStream(source, phone_column=phone_column, limits=limits)
    policy = NumberPolicy(default_region=region, blocked_types=frozenset())
    phone = stream.layout.phone_index
    report = ImportReport()
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE dnc_staging (number TEXT NOT NULL) ON COMMIT DROP")
        batch: list[str] = []
        for line_no, fields in stream:
            raw = fields[phone] if phone < len(fields) else ""
            result = normalise_number(raw, policy)
            if result.number is None or result.number.startswith("sip:"):
                report.rejected += 1
                if len(report.rejects) < MAX_REPORTED_REJECTS:
                    report.rejects.append((line_no, raw, str(result.reason or "sip_uri")))
                continue
            batch.append(result.number)
            if len(batch) >= IMPORT_BATCH:
                _copy(conn, batch)
                batch = []
        _copy(conn, batch)
        total = conn.execute("SELECT count(DISTINCT number) FROM dnc_staging").fetchone()
        if account_id is None:
            cur = conn.execute(
                "INSERT INTO dnc_number (number, reason) SELECT DISTINCT number, %s FROM dnc_staging "
                "ON CONFLICT DO NOTHING",
                (reason,),
            )
        else:
            cur = conn.execute(
                "INSERT INTO account_dnc_number (account_id, number, reason, source) "
                "SELECT DISTINCT %s::bigint, number, %s, 'import' FROM dnc_staging ON CONFLICT DO NOTHING",
                (account_id, reason),
            )
        report.added = cur.rowcount
        report.already_listed = int(total[0] if total else 0) - report.added
    return report


def _copy(conn: psycopg.Connection, numbers: list[str]) -> None:
    if not numbers:
        return
    with conn.cursor().copy("COPY dnc_staging (number) FROM STDIN") as copy:
        for number in numbers:
            copy.write_row((number,))
