"""`dialer campaign show` prints every setting of a campaign, and `show`, `list` and `status` write JSON
with --json (issue 22: show omitted the window, days, retry policy, CPS and message; there was no JSON)."""

from __future__ import annotations

import json
import secrets

import psycopg
from typer.testing import CliRunner

from campaigns.accounts import add_account, resolve_account_id
from campaigns.webhook_endpoints import set_notify_url
from workers.entrypoints.cli import app

runner = CliRunner()


def _configured(db: psycopg.Connection) -> tuple[int, str]:
    tag = secrets.token_hex(3)
    account = f"show-{tag}"
    add_account(db, name=account, provider="plivo", auth_id="MASHOW", auth_token="t", cps=9, max_concurrent=9)
    row = db.execute("INSERT INTO campaign (name, state) VALUES (%s, 'draft') RETURNING id",
                     (f"show-{tag}",)).fetchone()
    assert row is not None
    campaign_id = int(row[0])
    result = runner.invoke(app, [
        "campaign", "set", str(campaign_id), "--account", account, "--caller-id", "+14155550100",
        "--cps", "2.5", "--max-concurrent", "7", "--weight", "3", "--window", "10:00-18:30", "--days", "1-5",
        "--timezone", "Europe/Paris", "--retry", "busy=300:3", "--ring-timeout", "25",
        "--message", "Hello {first_name}", "--blackout-dates", "2026-12-24"])
    assert result.exit_code == 0, result.output
    return campaign_id, account


def test_show_prints_every_setting(db: psycopg.Connection) -> None:
    campaign_id, account = _configured(db)
    shown = runner.invoke(app, ["campaign", "show", str(campaign_id)], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stdout.split())
    for expected in (f"account {account}", "caller ID +14155550100", "message Hello {first_name}",
                     "window 10:00-18:30 (in Europe/Paris)", "days 1,2,3,4,5", "CPS 2.5", "max concurrent 7",
                     "weight 3", "retry policy busy: every 300 s, at most 3 attempts",
                     "provider options ring_timeout=25", "blackout dates 2026-12-24", "answer URL -",
                     "schedule -", "notify URL none"):
        assert expected in text, expected


def test_show_names_where_events_go_the_campaigns_endpoint_replacing_the_accounts(
    db: psycopg.Connection,
) -> None:
    campaign_id, account = _configured(db)
    account_id = resolve_account_id(db, account)
    set_notify_url(db, url="https://crm.example/account-hook", development=True, account_id=account_id)
    db.commit()
    inherited = json.loads(runner.invoke(app, ["campaign", "show", str(campaign_id), "--json"]).stdout)
    assert inherited["settings"]["notify_url"] == "https://crm.example/account-hook"
    assert inherited["settings"]["notify_url_from"] == "account"
    set_notify_url(db, url="https://crm.example/campaign-hook", development=True, campaign_id=campaign_id)
    db.commit()
    shown = runner.invoke(app, ["campaign", "show", str(campaign_id)], terminal_width=200)
    text = " ".join(shown.stdout.split())
    assert "notify URL https://crm.example/campaign-hook (the campaign's)" in text
    assert "whsec_" not in shown.stdout  # the URL, never its secret


def test_show_list_and_status_write_json(db: psycopg.Connection) -> None:
    campaign_id, account = _configured(db)
    shown = json.loads(runner.invoke(app, ["campaign", "show", str(campaign_id), "--json"]).stdout)
    assert shown["id"] == campaign_id and shown["state"] == "draft"
    assert shown["settings"]["account"] == account and shown["settings"]["window"] == "10:00-18:30"
    assert shown["settings"]["retry_policy"] == {"busy": {"delay_s": 300, "max_attempts": 3}}
    assert shown["settings"]["message"] == "Hello {first_name}" and shown["schedule"] is None
    listed = json.loads(runner.invoke(app, ["campaign", "list", "--json", "--limit", "500"]).stdout)
    assert campaign_id in [c["id"] for c in listed]
    status = json.loads(runner.invoke(app, ["campaign", "status", str(campaign_id), "--json"]).stdout)
    assert status["id"] == campaign_id and status["attempts"] == 0 and "destinations_by_status" in status
