"""`extra` is checked again where the adapter merges it into the create-call body (issue 20 item 6, at send
time): a campaign stored before the set-time check, or written around it, whose extra would connect the call
on (a VoIPbin `connect` action) or name a number at any depth, sends nothing to the carrier; each attempt
ends failed with "not sent:" and the stored path, and so does its destination."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from campaigns.accounts import add_account
from tests.engine_harness import load_campaign, numbers, prepare_and_start
from tests.sim_helpers import CallbackSink
from workers.dialing.chunk import dial_chunk
from workers.dialing.context import ChunkReport, DialContext
from workers.providers.errors import Refused
from workers.providers.extra_fields import merge_extra
from workers.ratelimit import Budgets

TALK = {"type": "talk", "option": {"text": "hello", "language": "en-US"}}
CONNECT = {"type": "connect", "option": {"source": {"type": "tel", "target": "+15559876543"},
                                         "destinations": [{"type": "tel", "target": "+19005550100"}]}}


@pytest.fixture()
def carrier() -> Iterator[CallbackSink]:
    """Stands in for the carrier: records every request that reaches it."""
    with CallbackSink() as sink:
        yield sink


def test_merge_extra_refuses_a_nested_redirect_and_leaves_the_body_as_it_was() -> None:
    body = {"from": "+14155550100", "to": "+14155552671"}
    with pytest.raises(Refused, match=r"provider_options\.extra\.params\.leg\.to would connect the call on"):
        merge_extra(body, {"caller_name": "Acme", "params": {"leg": {"to": "+19005550100"}}})
    assert body == {"from": "+14155550100", "to": "+14155552671"}
    assert merge_extra(body, {"caller_name": "Acme"})["caller_name"] == "Acme"


def _dial_stored_extra(conn: psycopg.Connection, carrier: CallbackSink, redis_client: Any, provider: str,
                       auth_id: str, extra: dict[str, Any]) -> tuple[int, ChunkReport]:
    """A campaign of two destinations whose extra is written straight to its row (no check), dialed once."""
    tag = secrets.token_hex(4)
    account_id = add_account(conn, name=f"extra-{tag}", provider=provider, auth_id=auth_id, auth_token="tok",
                             cps=50, max_concurrent=10, base_url=carrier.url(""))
    campaign_id = load_campaign(f"extra-{tag}", numbers(2, start=int(tag, 16) % 5000, area="646"))
    prepare_and_start(conn, campaign_id, account_id, provider_options={"ring_timeout": 30, "extra": extra})
    ids = [r[0] for r in conn.execute(
        "SELECT id FROM destination WHERE campaign_id = %s ORDER BY line_no", (campaign_id,))]
    conn.execute("UPDATE destination SET status = 'queued', "  # as the dispatcher's claim leaves them
                 "next_attempt_at = now() + interval '30 seconds' WHERE campaign_id = %s", (campaign_id,))
    with httpx.Client(timeout=5) as client:
        report = dial_chunk(DialContext(conn, client, Budgets(redis_client)), campaign_id, ids)
    conn.execute("UPDATE campaign SET state = 'paused' WHERE id = %s", (campaign_id,))
    return campaign_id, report


@pytest.mark.parametrize(("provider", "auth_id", "extra", "path"), [
    ("voipbin", "vb-customer", {"actions": [TALK, CONNECT]}, "extra.actions[1].type"),
    ("voipbin", "vb-customer", {"actions": [{"type": "talk", "option": {"text": "hi",
                                                                        "number": "+19005550100"}}]},
     "extra.actions[0].option.number"),
    ("plivo", "MAEXTRA0000000000001", {"params": {"leg": {"to": "+19005550100"}}}, "extra.params.leg.to"),
], ids=["voipbin connect action", "voipbin nested number", "plivo nested number"])
def test_a_stored_extra_that_would_redirect_the_call_is_never_sent_and_its_attempts_fail(
    carrier: CallbackSink, database_url: str, redis_client: Any, provider: str, auth_id: str,
    extra: dict[str, Any], path: str,
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        campaign_id, report = _dial_stored_extra(conn, carrier, redis_client, provider, auth_id, extra)
        attempts = conn.execute("SELECT status, error_message FROM call_attempt WHERE campaign_id = %s",
                                (campaign_id,)).fetchall()
        destinations = conn.execute("SELECT status, outcome FROM destination WHERE campaign_id = %s",
                                    (campaign_id,)).fetchall()
    assert carrier.snapshot() == []  # nothing reached the carrier
    assert report.sent == 0 and report.failed == 2
    assert len(attempts) == 2
    for status, message in attempts:
        assert status == "failed"
        assert message.startswith(f"not sent: provider_options.{path} would connect the call on"), message
    assert destinations == [("failed", "failed")] * 2


def test_an_extra_within_the_call_is_still_sent(
    carrier: CallbackSink, database_url: str, redis_client: Any
) -> None:
    # The same path with a harmless extra reaches the carrier: what the test above sees is the refusal.
    with psycopg.connect(database_url, autocommit=True) as conn:
        _dial_stored_extra(conn, carrier, redis_client, "voipbin", "vb-customer", {"actions": [TALK]})
    sent = carrier.wait_for(lambda got: len(got) >= 1)
    assert b'"talk"' in sent[0].body and b"connect" not in sent[0].body
