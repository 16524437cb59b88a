"""The dialer never sends a SIP URI to a provider that dials only E.164 numbers, even for a row stored before
the loader and `campaign set` refused them: the dial chunk ends it as invalid, with the loader's reason as
its outcome, and dials the rest of the chunk."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from campaigns.accounts import add_account
from tests.engine_harness import load_campaign, prepare_and_start
from tests.sim_helpers import CallbackSink
from workers.dialing.chunk import dial_chunk
from workers.dialing.context import DialContext
from workers.ratelimit import Budgets

SIP = "sip:desk@pbx.example.com"


@pytest.fixture()
def carrier() -> Iterator[CallbackSink]:
    """Stands in for TryVox: records every request; what it answers does not matter here."""
    with CallbackSink() as sink:
        yield sink


def test_a_sip_uri_stored_for_a_tel_only_provider_ends_invalid_and_is_never_sent(
    carrier: CallbackSink, database_url: str, redis_client: Any
) -> None:
    tag = secrets.token_hex(4)
    with psycopg.connect(database_url, autocommit=True) as conn, httpx.Client(timeout=5) as client:
        account_id = add_account(conn, name=f"tel-only-{tag}", provider="tryvox", auth_id=f"TV{tag}",
                                 auth_token="tok", cps=50, max_concurrent=10, base_url=carrier.url(""))
        # Loaded with no account (any kind is kept), then pointed at TryVox directly: a row written before
        # the checks of the loader and `campaign set`.
        campaign_id = load_campaign(f"tel-only-{tag}", ["+14155552671", SIP])
        prepare_and_start(conn, campaign_id, account_id, provider_options={"ring_timeout": 30, "bulk": False})
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM destination WHERE campaign_id = %s ORDER BY line_no", (campaign_id,))]
        conn.execute("UPDATE destination SET status = 'queued', "  # as the dispatcher's claim leaves them
                     "next_attempt_at = now() + interval '30 seconds' WHERE campaign_id = %s", (campaign_id,))

        report = dial_chunk(DialContext(conn, client, Budgets(redis_client)), campaign_id, ids)

        assert report.undialable == 1
        ended = conn.execute("SELECT status, outcome, attempts_made FROM destination WHERE number = %s "
                             "AND campaign_id = %s", (SIP, campaign_id)).fetchone()
        assert ended == ("invalid", "provider_cannot_dial", 0)
        assert conn.execute("SELECT count(*) FROM call_attempt WHERE destination_id = %s",
                            (ids[1],)).fetchone() == (0,)
        sent = carrier.wait_for(lambda got: len(got) >= 1)
        assert len(sent) == 1 and b"+14155552671" in sent[0].body  # the rest of the chunk was dialed
        assert all(b"sip:" not in request.body for request in carrier.snapshot())
        conn.execute("UPDATE campaign SET state = 'paused' WHERE id = %s", (campaign_id,))
