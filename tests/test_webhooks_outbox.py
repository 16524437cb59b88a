"""Outbound webhooks without processes (issue 22): the backoff and the URL rules (pure), and on a real
Postgres the outbox's promises: an event is recorded in the transaction of its state change or not at all, a
campaign's endpoint replaces its account's, a claim takes only the head of each destination's queue, a
failure is retried until its window closes and then given up, retention deletes only delivered rows, and the
API and CLI set endpoints with secrets shown once and stored encrypted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from standardwebhooks import Webhook
from typer.testing import CliRunner

from campaigns.accounts import add_account
from campaigns.api_keys import create_api_key
from campaigns.config import get_settings
from campaigns.control import pause
from campaigns.retention import prune
from campaigns.secrets_box import decrypt, encrypt
from campaigns.store.dial_store import pause_account_campaigns
from campaigns.webhook_endpoints import new_secret, notify_url_refusal, set_notify_url
from campaigns.webhook_outbox import ClaimedSend, TryResult, claim_sends, record_tries, retry_delay_s
from tests.engine_harness import load_campaign, numbers
from tests.webhook_receiver import Answer, Receiver
from workers.entrypoints.cli import app as cli_app
from workers.housekeeping.webhook_delivery import address_refusal, post_once, webhook_client

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("tries", "rand", "delay"), [
    (1, 0.0, 2.5), (1, 0.999999, 5.0), (2, 0.0, 5.0), (3, 0.5, 15.0), (10, 0.0, 1280.0), (11, 0.0, 1800.0),
    (80, 1.0, 3600.0),
])
def test_backoff_doubles_with_jitter_up_to_its_ceiling(tries: int, rand: float, delay: float) -> None:
    assert retry_delay_s(tries, base_s=5, max_s=3600, rand=rand) == pytest.approx(delay, rel=1e-5)


@pytest.mark.parametrize(("url", "development", "refused"), [
    ("https://crm.example.com/hooks", False, None),
    ("http://crm.example.com/hooks", False, "an https URL"),
    ("http://127.0.0.1:9000/hooks", True, None),
    ("https://localhost/hooks", False, "a public host"),
    ("https://127.0.0.1/hooks", False, "a public address"),
    ("https://10.1.2.3/hooks", False, "a public address"),
    ("https://169.254.169.254/latest/meta-data", False, "a public address"),
    ("https://[::1]/hooks", False, "a public address"),
    ("https://[::ffff:192.168.0.1]/hooks", False, "a public address"),
    ("https://user:pw@crm.example.com/hooks", False, "without credentials"),
    ("ftp://crm.example.com/hooks", True, "an http(s) URL"),
])
def test_a_notify_url_is_https_and_public_outside_development(url: str, development: bool,
                                                                refused: str | None) -> None:
    reason = notify_url_refusal(url, development=development)
    assert (reason is None) if refused is None else (reason is not None and refused in reason), reason


@pytest.fixture()
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url) as connection:
        yield connection


_accounts = iter(range(10_000))


@pytest.fixture(scope="module", autouse=True)
def _no_endpoint_left_behind(database_url: str) -> Iterator[None]:
    """The endpoints made here go (their deliveries with them): no later module's worker tries them."""
    yield
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("DELETE FROM webhook_endpoint WHERE url LIKE 'https://%.example.com/%'")


def _campaign_with_account(conn: psycopg.Connection) -> tuple[int, int]:
    n = next(_accounts)
    account_id = add_account(conn, name=f"outbox-{n}", provider="plivo", auth_id=f"MAOUTBOX{n}",
                             auth_token="tok", cps=5, max_concurrent=5, base_url="http://127.0.0.1:9")
    conn.commit()
    campaign_id = load_campaign(f"outbox {n}", numbers(3, start=8000 + 10 * n))
    conn.execute("UPDATE campaign SET account_id = %s WHERE id = %s", (account_id, campaign_id))
    conn.commit()
    return account_id, campaign_id


def _events(conn: psycopg.Connection, campaign_id: int) -> list[tuple[str, int, dict[str, Any]]]:
    rows = conn.execute("SELECT event_type, endpoint_id, payload FROM webhook_delivery "
                        "WHERE campaign_id = %s ORDER BY id", (campaign_id,)).fetchall()
    conn.commit()
    return [(r[0], r[1], r[2]) for r in rows]


def _endpoint(conn: psycopg.Connection, **owner: int) -> int:
    column, value = next(iter(owner.items()))
    row = conn.execute(f"SELECT id FROM webhook_endpoint WHERE {column} = %s", (value,)).fetchone()
    assert row is not None
    return int(row[0])


def test_an_event_is_recorded_in_the_transaction_of_its_state_change_or_not_at_all(conn) -> None:
    account_id, campaign_id = _campaign_with_account(conn)
    set_notify_url(conn, url="https://crm.example.com/hooks", development=False, account_id=account_id)
    conn.commit()
    destination = conn.execute("SELECT id FROM destination WHERE campaign_id = %s ORDER BY id LIMIT 1",
                               (campaign_id,)).fetchone()[0]
    finish = "UPDATE destination SET status = 'done', outcome = 'answered' WHERE id = %s"
    with pytest.raises(RuntimeError), conn.transaction():
        conn.execute(finish, (destination,))
        raise RuntimeError("the process dies before its commit")
    assert _events(conn, campaign_id) == []
    conn.execute(finish, (destination,))
    conn.commit()
    [(kind, endpoint, payload)] = _events(conn, campaign_id)
    assert (kind, endpoint) == ("destination.final", _endpoint(conn, account_id=account_id))
    assert payload["type"] == "destination.final" and payload["timestamp"].endswith("Z")
    assert payload["data"]["destination_id"] == destination and payload["data"]["outcome"] == "answered"
    assert payload["data"]["variables"]["name"].startswith("person"), "the row's own columns travel with it"


def test_a_provider_error_pause_is_told_with_its_reason_and_an_operators_pause_is_not(conn) -> None:
    account_id, campaign_id = _campaign_with_account(conn)
    set_notify_url(conn, url="https://crm.example.com/hooks", development=False, account_id=account_id)
    conn.execute("UPDATE campaign SET state = 'running' WHERE id = %s", (campaign_id,))
    conn.commit()
    pause(conn, campaign_id)
    conn.execute("UPDATE campaign SET state = 'running' WHERE id = %s", (campaign_id,))
    pause_account_campaigns(conn, account_id, "authentication failed: 401")
    conn.commit()
    [(kind, _, payload)] = _events(conn, campaign_id)
    assert kind == "campaign.paused" and payload["data"]["reason"] == "authentication failed: 401"


def test_a_campaigns_own_endpoint_replaces_its_accounts(conn) -> None:
    account_id, campaign_id = _campaign_with_account(conn)
    set_notify_url(conn, url="https://account.example.com/hooks", development=False, account_id=account_id)
    set_notify_url(conn, url="https://campaign.example.com/hooks", development=False, campaign_id=campaign_id)
    conn.execute("UPDATE campaign SET state = 'completed' WHERE id = %s", (campaign_id,))
    conn.commit()
    [(kind, endpoint, _)] = _events(conn, campaign_id)
    assert (kind, endpoint) == ("campaign.completed", _endpoint(conn, campaign_id=campaign_id))
    set_notify_url(conn, url="", development=False, campaign_id=campaign_id)  # removed: the account's again
    conn.execute("UPDATE campaign SET state = 'paused', state_reason = 'balance too low' WHERE id = %s",
                 (campaign_id,))
    conn.commit()
    assert [e[1] for e in _events(conn, campaign_id)] == [_endpoint(conn, account_id=account_id)]


def test_a_claim_takes_only_the_head_of_each_destinations_queue_and_gives_up_after_its_window(conn) -> None:
    account_id, campaign_id = _campaign_with_account(conn)
    set_notify_url(conn, url="https://crm.example.com/hooks", development=False, account_id=account_id)
    conn.commit()
    first, second = (r[0] for r in conn.execute(
        "SELECT id FROM destination WHERE campaign_id = %s ORDER BY id LIMIT 2", (campaign_id,)).fetchall())
    for status in ("dnc", "cancelled"):  # two events for the first destination, one for the second
        conn.execute("UPDATE destination SET status = %s WHERE id = %s", (status, first))
    conn.execute("UPDATE destination SET status = 'expired' WHERE id = %s", (second,))
    conn.commit()
    mine = {r[0] for r in conn.execute("SELECT id FROM webhook_delivery WHERE campaign_id = %s",
                                       (campaign_id,)).fetchall()}
    claimed = [s for s in claim_sends(conn, limit=50, per_endpoint=50, lease_s=60) if s.id in mine]
    assert len(claimed) == 2 and claimed[0].tries == 1, "one head per destination, never its second event"
    in_flight = claim_sends(conn, limit=50, per_endpoint=50, lease_s=60)
    assert not [s for s in in_flight if s.id in mine], "a head in flight is not due, nor what waits behind it"
    head_of_first = min(s.id for s in claimed)
    record_tries(conn, [TryResult(head_of_first, 503, "answered 503", 0.0)], retry_for_s=3600)
    record_tries(conn, [TryResult(max(s.id for s in claimed), None, "timed out", 7200.0)], retry_for_s=3600)
    states = dict(conn.execute("SELECT id, state FROM webhook_delivery WHERE id = ANY(%s)",
                               (sorted(mine),)).fetchall())
    conn.commit()
    assert states[max(s.id for s in claimed)] == "failed", "a retry past the window is given up"
    again = [s for s in claim_sends(conn, limit=50, per_endpoint=50, lease_s=60) if s.id in mine]
    assert [(s.id, s.tries) for s in again] == [(head_of_first, 2)], "the failed head comes back, alone"
    record_tries(conn, [TryResult(head_of_first, 200, None, 0.0)], retry_for_s=3600)
    after = [s for s in claim_sends(conn, limit=50, per_endpoint=50, lease_s=60) if s.id in mine]
    assert len(after) == 1 and after[0].id > head_of_first, "delivered: the destination's next one goes"


def test_prune_deletes_delivered_webhooks_past_its_age_and_keeps_failed_and_pending(conn) -> None:
    account_id, campaign_id = _campaign_with_account(conn)
    set_notify_url(conn, url="https://crm.example.com/hooks", development=False, account_id=account_id)
    conn.execute("UPDATE destination SET status = 'dnc' WHERE campaign_id = %s", (campaign_id,))
    conn.commit()
    ids = [r[0] for r in conn.execute("SELECT id FROM webhook_delivery WHERE campaign_id = %s ORDER BY id",
                                      (campaign_id,)).fetchall()]
    conn.execute("UPDATE webhook_delivery SET state = 'delivered', finished_at = now() - interval '40 days' "
                 "WHERE id = %s", (ids[0],))
    conn.execute("UPDATE webhook_delivery SET state = 'failed', finished_at = now() - interval '40 days' "
                 "WHERE id = %s", (ids[1],))
    conn.commit()
    report = prune(conn, older_than=timedelta(days=30))
    assert report.deleted["webhook_delivery"] >= 1
    left = [r[0] for r in conn.execute("SELECT id FROM webhook_delivery WHERE campaign_id = %s ORDER BY id",
                                       (campaign_id,)).fetchall()]
    assert left == ids[1:]


def test_the_api_sets_endpoints_with_their_secret_shown_once_and_an_accounts_needs_an_admin(
    client, auth, conn
) -> None:
    account_id, campaign_id = _campaign_with_account(conn)
    answer = client.patch(f"/campaigns/{campaign_id}", headers=auth,
                          json={"notify_url": "https://crm.example.com/campaign-hooks"})
    assert answer.status_code == 200, answer.text
    secret = answer.json()["notify_secret"]
    assert secret.startswith("whsec_")
    assert client.get(f"/campaigns/{campaign_id}", headers=auth).json()["notify_secret"] is None
    stored = conn.execute("SELECT secret_encrypted FROM webhook_endpoint WHERE campaign_id = %s",
                          (campaign_id,)).fetchone()[0]
    assert secret not in stored and decrypt(stored) == secret

    operator = create_api_key(conn, name="wh-operator", role="operator", accounts=[account_id]).key
    conn.commit()
    url = f"/accounts/{account_id}/notify-url"
    body = {"notify_url": "https://crm.example.com/account-hooks"}
    assert client.put(url, json=body, headers={"Authorization": f"Bearer {operator}"}).status_code == 403
    answer = client.put(url, json=body, headers=auth)
    assert answer.status_code == 200 and answer.json()["secret"].startswith("whsec_")
    refused = client.put(url, json={"notify_url": "ftp://crm.example.com"}, headers=auth)
    assert refused.status_code == 422 and "notify_url" in refused.text


def test_the_cli_prints_a_new_secret_once_when_a_notify_url_is_set(conn) -> None:
    account_id, campaign_id = _campaign_with_account(conn)
    runner = CliRunner()
    done = runner.invoke(cli_app, ["campaign", "set", str(campaign_id), "--notify-url",
                                   "https://crm.example.com/hooks"])
    assert done.exit_code == 0, done.output
    assert "whsec_" in done.output
    name = conn.execute("SELECT name FROM provider_account WHERE id = %s", (account_id,)).fetchone()[0]
    done = runner.invoke(cli_app, ["account", "update", name, "--notify-url", "https://crm.example.com/a"])
    assert done.exit_code == 0 and "whsec_" in done.output, done.output
    assert "whsec_" not in runner.invoke(cli_app, ["account", "show", name]).output


def test_outside_development_a_name_that_resolves_to_this_machine_is_not_sent_to() -> None:
    """SSRF: a notify URL whose name resolves to loopback (or a private or link-local address) is refused
    when the POST would be made, not only a literal address when the URL is set."""
    refusal = address_refusal("https://localhost/hooks") or ""
    assert "localhost resolves to a non-public address" in refusal, refusal


def test_a_redirect_is_a_failed_try_and_is_not_followed() -> None:
    """The webhook client follows no redirect: a receiver cannot bounce a signed event to another host."""
    with Receiver(lambda n: Answer(302)) as receiver:
        send = ClaimedSend(id=1, message_id="msg_test", body='{"type":"x"}', tries=1,
                           created_at=datetime.now(UTC), url=receiver.url,
                           secret_encrypted=encrypt(new_secret()))
        status, error = post_once(webhook_client(get_settings()), send, development=True)
        assert (status, error) == (302, "answered 302")
        assert len(receiver.snapshot()) == 1


def test_the_readmes_verifying_snippet_accepts_a_signed_event_and_refuses_a_forged_one() -> None:
    """README "Outbound webhooks": its Python block, run as written against an event we signed."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Outbound webhooks"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    secret = new_secret()
    handled: list[Any] = []
    namespace: dict[str, Any] = {"seen_before": lambda _id: False, "handle": lambda *a: handled.append(a)}
    exec(code.replace('"whsec_…"', repr(secret)), namespace)  # noqa: S102 (the README's own code)
    body = '{"type": "campaign.completed", "timestamp": "2026-01-01T00:00:00Z", "data": {"campaign_id": 1}}'
    now = datetime.now(UTC)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(secret).sign("msg_1", now, body)}
    assert namespace["receive"](body.encode(), headers) == 204 and handled == [("campaign.completed",
                                                                                 {"campaign_id": 1})]
    forged = {**headers, "webhook-signature": Webhook(new_secret()).sign("msg_1", now, body)}
    assert namespace["receive"](body.encode(), forged) == 400
