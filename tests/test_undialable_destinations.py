"""Numbers a provider cannot dial are refused at load, row by row, with the reason naming the provider; a
campaign never comes to hold them later: an account change or a start that would have its provider dial
them is refused, naming how many and the first, and changes nothing."""

from __future__ import annotations

import io
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from campaigns import control, copy_chunks, destination_kinds
from campaigns.accounts import add_account
from campaigns.errors import InvalidRequest
from campaigns.loader import LoadOptions, load_campaign_csv
from campaigns.numbers import NumberPolicy, RejectReason, RowLayout, normalise_row
from campaigns.settings_rules import InvalidSetting
from workers.entrypoints.cli import app
from workers.providers.registry import PROVIDERS

SIP = "sip:desk@pbx.example.com"
TRYVOX_CANNOT = "tryvox dials only E.164 numbers, not SIP URIs"
# Line 2 is an E.164 number, line 3 a SIP URI, line 4 a malformed one (invalid for every provider).
CSV = f"phone,name\n+14155552671,Ann\n{SIP},Desk\nsip:@nowhere,Bad\n".encode()


@pytest.fixture()
def plivo_dials_sip() -> Iterator[None]:
    """Plivo's page lets it dial SIP URIs (its adapter declares so); pinned here so these tests do not
    depend on when that declaration lands."""
    before = destination_kinds.destination_kinds("plivo")
    destination_kinds.register_destination_kinds("plivo", {"tel", "sip"})
    yield
    destination_kinds.register_destination_kinds("plivo", before or {"tel"})


def _account(conn: psycopg.Connection, provider: str) -> tuple[int, str]:
    name = f"kinds-{provider}-{secrets.token_hex(3)}"
    account_id = add_account(conn, name=name, provider=provider, auth_id="AKINDS", auth_token="t", cps=1,
                             max_concurrent=1)
    conn.commit()
    return account_id, name


def _load(data: bytes = CSV, account_id: int | None = None) -> int:
    report = load_campaign_csv(name=f"kinds-{secrets.token_hex(4)}", source=io.BytesIO(data),
                               options=LoadOptions(account_id=account_id))
    return report.campaign_id


def _rejects(conn: psycopg.Connection, campaign_id: int) -> list[tuple[int, str, str, str]]:
    return conn.execute(
        "SELECT line_no, raw_value, reason, detail FROM rejected_row WHERE campaign_id = %s ORDER BY line_no",
        (campaign_id,)).fetchall()


def _state(conn: psycopg.Connection, campaign_id: int) -> str:
    row = conn.execute("SELECT state FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_every_adapter_declares_the_destination_kinds_the_domain_checks() -> None:
    for kind, adapter in PROVIDERS.items():
        assert destination_kinds.destination_kinds(kind) == adapter.traits.options.destination_kinds
    assert "sip" not in PROVIDERS["tryvox"].traits.options.destination_kinds  # its page: E.164 only


@pytest.mark.parametrize(("raw", "kinds", "reason", "detail"), [
    (SIP, frozenset({"tel"}), RejectReason.PROVIDER_CANNOT_DIAL, TRYVOX_CANNOT),
    ("+14155552671", frozenset({"sip"}), RejectReason.PROVIDER_CANNOT_DIAL,
     "tryvox dials only SIP URIs, not E.164 numbers"),
    ("sip:@nowhere", frozenset({"tel"}), RejectReason.INVALID_NUMBER, "malformed sip: URI"),  # bad first
    ("12345", frozenset({"tel"}), RejectReason.NOT_POSSIBLE, "too short"),
    (SIP, frozenset({"tel", "sip"}), None, None),
    (SIP, None, None, None),  # no account known at load: any kind is kept
    ("+14155552671", frozenset({"tel"}), None, None),
])
def test_a_row_is_refused_when_the_provider_cannot_dial_its_kind(
    raw: str, kinds: frozenset[str] | None, reason: RejectReason | None, detail: str | None
) -> None:
    policy = NumberPolicy(provider="tryvox", destination_kinds=kinds)
    row = normalise_row(7, [raw], RowLayout.build(("phone",), 0), policy)
    assert (row.reason, row.detail) == (reason, detail)
    assert (row.number is None) == (reason is not None)


def test_the_loader_rejects_each_sip_uri_for_a_tel_only_account_with_line_value_and_reason(
    database_url: str,
) -> None:
    with psycopg.connect(database_url) as conn:
        account_id, _ = _account(conn, "tryvox")
        campaign_id = _load(account_id=account_id)
        assert _rejects(conn, campaign_id) == [
            (3, SIP, "provider_cannot_dial", TRYVOX_CANNOT),
            (4, "sip:@nowhere", "invalid_number", "malformed sip: URI"),
        ]
        loaded = conn.execute("SELECT number FROM destination WHERE campaign_id = %s", (campaign_id,))
        assert loaded.fetchall() == [("+14155552671",)]


def test_the_parser_processes_of_a_big_file_reject_them_too(database_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(copy_chunks, "CHUNK_ROWS", 50)
    monkeypatch.setattr(copy_chunks, "PARALLEL_AFTER_ROWS", 50)
    body = "phone\n" + "".join(f"+1415555{i:04d}\n" if i % 3 else f"sip:u{i}@pbx.example.com\n"
                               for i in range(300))
    with psycopg.connect(database_url) as conn:
        account_id, _ = _account(conn, "tryvox")
        report = load_campaign_csv(name=f"kinds-{secrets.token_hex(4)}", source=io.BytesIO(body.encode()),
                                   options=LoadOptions(account_id=account_id, workers=2))
        assert report.rejects_by_reason == {"provider_cannot_dial": 100}
        assert report.rows_loaded == 200
        assert _rejects(conn, report.campaign_id)[-1] == (299, "sip:u297@pbx.example.com",
                                                          "provider_cannot_dial", TRYVOX_CANNOT)


def test_the_loader_keeps_sip_uris_for_a_provider_that_dials_them(database_url: str,
                                                                   plivo_dials_sip: None) -> None:
    with psycopg.connect(database_url) as conn:
        account_id, _ = _account(conn, "plivo")
        campaign_id = _load(account_id=account_id)
        assert [r[2] for r in _rejects(conn, campaign_id)] == ["invalid_number"]
        count = conn.execute("SELECT count(*) FROM destination WHERE campaign_id = %s AND number = %s",
                             (campaign_id, SIP)).fetchone()
        assert count == (1,)


def test_the_api_upload_answers_the_reason_and_lists_the_row(
    client: TestClient, auth: dict[str, str], database_url: str
) -> None:
    with psycopg.connect(database_url) as conn:
        _, account = _account(conn, "tryvox")
    response = client.post("/campaigns", headers=auth, data={"name": f"kinds-{secrets.token_hex(3)}",
                                                             "account": account},
                           files={"file": ("people.csv", CSV, "text/csv")})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["rejects_by_reason"] == {"invalid_number": 1, "provider_cannot_dial": 1}
    page = client.get(f"/campaigns/{body['campaign_id']}/rejects", headers=auth,
                      params={"reason": "provider_cannot_dial"}).json()
    assert [(r["line"], r["raw_value"], r["detail"]) for r in page["items"]] == [(3, SIP, TRYVOX_CANNOT)]


def test_the_cli_create_prints_the_reason_and_rejects_shows_the_provider(database_url: str,
                                                                       tmp_path: Path) -> None:
    with psycopg.connect(database_url) as conn:
        _, account = _account(conn, "tryvox")
    path = tmp_path / "people.csv"
    path.write_bytes(CSV)
    runner = CliRunner()
    created = runner.invoke(app, ["campaign", "create", f"kinds-{secrets.token_hex(3)}", "--csv", str(path),
                                  "--account", account])
    assert created.exit_code == 0, created.output
    output = " ".join(created.stdout.split())
    assert re.search(r"provider_cannot_dial │ 1 ", output), output
    campaign_id = re.search(r"campaign (\d+) ", created.stdout).group(1)  # type: ignore[union-attr]
    exported = tmp_path / "rejects.csv"
    shown = runner.invoke(app, ["campaign", "rejects", campaign_id, "--csv", str(exported)])
    assert shown.exit_code == 0, shown.output
    assert f"3,provider_cannot_dial,{SIP},\"{TRYVOX_CANNOT}\"" in exported.read_text().splitlines()


def test_moving_a_campaign_with_sip_uris_to_a_tel_only_account_is_refused_and_changes_nothing(
    database_url: str, plivo_dials_sip: None
) -> None:
    with psycopg.connect(database_url) as conn:
        plivo, _ = _account(conn, "plivo")
        tryvox, _ = _account(conn, "tryvox")
        campaign_id = _load(b"phone\n+14155552671\nsip:a@pbx.example.com\nsip:b@pbx.example.com\n")
        control.configure(conn, campaign_id, control.CampaignSettings(account_id=plivo))
        with pytest.raises(InvalidSetting) as refused:
            control.configure(conn, campaign_id, control.CampaignSettings(account_id=tryvox, cps=2))
        conn.rollback()
        assert refused.value.field == "account"
        assert (f"campaign {campaign_id} holds 2 destinations tryvox cannot dial ({TRYVOX_CANNOT}), "
                "e.g. line 3: sip:a@pbx.example.com") in str(refused.value)
        row = conn.execute("SELECT account_id, cps FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
        assert row == (plivo, None)
        assert conn.execute("SELECT count(*) FROM destination WHERE campaign_id = %s",
                            (campaign_id,)).fetchone() == (3,)


def test_a_campaign_of_e164_numbers_moves_to_a_tel_only_account(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        tryvox, _ = _account(conn, "tryvox")
        campaign_id = _load(b"phone\n+14155552671\n")
        control.configure(conn, campaign_id, control.CampaignSettings(account_id=tryvox))
        assert conn.execute("SELECT account_id FROM campaign WHERE id = %s",
                            (campaign_id,)).fetchone() == (tryvox,)


def test_the_api_patch_of_the_account_is_a_422_naming_the_field(
    client: TestClient, auth: dict[str, str], database_url: str
) -> None:
    with psycopg.connect(database_url) as conn:
        _, account = _account(conn, "tryvox")
    campaign_id = _load()
    response = client.patch(f"/campaigns/{campaign_id}", headers=auth, json={"account": account})
    assert response.status_code == 422, response.text
    assert "holds a destination tryvox cannot dial" in response.json()["message"]
    assert "line 3: " + SIP in response.json()["message"]


def test_a_campaign_holding_sip_uris_does_not_start_on_a_tel_only_account(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        tryvox, _ = _account(conn, "tryvox")
        campaign_id = _load()
        # As a campaign moved before `campaign set` checked: the account written directly.
        conn.execute("UPDATE campaign SET account_id = %s, caller_id = '+14155550100' WHERE id = %s",
                     (tryvox, campaign_id))
        conn.commit()
        with pytest.raises(InvalidRequest, match=re.escape(
                f"campaign {campaign_id} holds a destination tryvox cannot dial ({TRYVOX_CANNOT}), "
                f"e.g. line 3: {SIP}")):
            control.start(conn, campaign_id)
        conn.rollback()
        assert _state(conn, campaign_id) == "draft"
        # Once it ended as invalid (the dial path's final state for such a row), it no longer counts.
        conn.execute("UPDATE destination SET status = 'invalid' WHERE campaign_id = %s AND number = %s",
                     (campaign_id, SIP))
        control.start(conn, campaign_id)
        assert _state(conn, campaign_id) == "running"
        conn.execute("UPDATE campaign SET state = 'paused' WHERE id = %s", (campaign_id,))
        conn.commit()
