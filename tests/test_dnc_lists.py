"""Do-not-call lists: global and per account, normalised to E.164, streamed imports that add nothing from a
refused file, and one lookup (dial_store.dnc_numbers) that sees both lists. Real Postgres."""

from __future__ import annotations

import io
import uuid

import psycopg
import pytest

from campaigns import dnc
from campaigns.errors import BadInputFile, InvalidRequest
from campaigns.secrets_box import encrypt
from campaigns.store.dial_store import dnc_numbers


def _account(conn: psycopg.Connection) -> int:
    return conn.execute(
        "INSERT INTO provider_account (name, provider, auth_id, auth_token_encrypted, base_url, cps, "
        "max_concurrent) VALUES (%s, 'plivo', 'MA', %s, 'http://127.0.0.1:9', 1, 1) RETURNING id",
        (f"dnc-{uuid.uuid4().hex[:8]}", encrypt("token")),
    ).fetchone()[0]


def test_numbers_are_stored_in_e164_whatever_their_spelling(db: psycopg.Connection) -> None:
    account = _account(db)
    number, added = dnc.add_number(db, "(646) 555-0101", account_id=account)
    assert (number, added) == ("+16465550101", True)
    assert dnc.add_number(db, "+1 646 555 0101", account_id=account) == ("+16465550101", False)
    with pytest.raises(InvalidRequest, match="not a phone number"):
        dnc.add_number(db, "call me maybe", account_id=account)


def _campaign_on(db: psycopg.Connection, account_id: int) -> int:
    row = db.execute("INSERT INTO campaign (name, account_id, state) VALUES ('dnc lists', %s, 'draft') "
                     "RETURNING id", (account_id,)).fetchone()
    assert row is not None
    return int(row[0])


def test_an_accounts_list_applies_to_that_account_only_and_the_global_list_to_all(
    db: psycopg.Connection,
) -> None:
    mine, other = _account(db), _account(db)
    dnc.add_number(db, "+16465550111", account_id=mine, reason="asked")
    dnc.add_number(db, "+16465550112")
    asked = ["+16465550111", "+16465550112", "+16465550113"]
    assert dnc_numbers(db, asked, _campaign_on(db, mine)) == {"+16465550111", "+16465550112"}
    assert dnc_numbers(db, asked, _campaign_on(db, other)) == {"+16465550112"}
    # A campaign with both accounts (one its fallback) screens by the union of their lists.
    both = _campaign_on(db, other)
    db.execute("INSERT INTO campaign_fallback_account (campaign_id, position, account_id) VALUES (%s, 1, %s)",
               (both, mine))
    assert dnc_numbers(db, asked, both) == {"+16465550111", "+16465550112"}
    assert dnc.remove_number(db, "646-555-0111", account_id=mine)
    assert dnc_numbers(db, asked, _campaign_on(db, mine)) == {"+16465550112"}
    dnc.remove_number(db, "+16465550112")


def test_an_import_streams_normalises_reports_bad_lines_and_exports_back(db: psycopg.Connection) -> None:
    account = _account(db)
    dnc.add_number(db, "+16465550121", account_id=account)
    body = "phone,note\n(646) 555-0121,dup of listed\n646.555.0122,new\nnonsense,bad\n+16465550122,same\n"
    report = dnc.import_file(db, io.BytesIO(body.encode()), account_id=account, reason="crm export")
    assert (report.added, report.already_listed, report.rejected) == (1, 1, 1)
    assert report.rejects == [(4, "nonsense", "invalid_number")]
    out = io.StringIO()
    assert dnc.write_csv(dnc.iter_entries(db, account_id=account), out) == 2
    lines = out.getvalue().splitlines()
    assert lines[0] == "number,reason,source,added_at"
    assert [line.split(",")[:3] for line in lines[1:]] == [
        ["+16465550121", "", "operator"],
        ["+16465550122", "crm export", "import"],
    ]


def test_a_refused_import_file_adds_nothing(db: psycopg.Connection) -> None:
    account = _account(db)
    with pytest.raises(BadInputFile):
        dnc.import_file(db, io.BytesIO(b"name,city\nann,paris\n"), account_id=account)
    assert dnc_numbers(db, ["+16465550131"], _campaign_on(db, account)) == set()
    assert db.execute(
        "SELECT count(*) FROM account_dnc_number WHERE account_id = %s", (account,)
    ).fetchone() == (0,)
