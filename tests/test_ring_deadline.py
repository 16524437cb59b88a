"""A Vobiz account reading `hangup_on_ring` as ringing and talk (the default) asks for ring timeout + time
limit; a call still unanswered at its ring timeout is ended through the hang-up API by the reaper's sweep
(workers.housekeeping.ring_deadline). The simulator rings it on (its `call` reading); the test plays the
reaper's tick."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from campaigns.accounts import add_account, load_account
from campaigns.store import dial_store
from tests.engine_harness import load_campaign, numbers, prepare_and_start
from tests.polling import wait_for
from tests.results_helpers import NO_RETRIES
from tests.sim_helpers import RunningSimulator, start_simulator
from workers.dialing.outbound_request import outbound_call
from workers.housekeeping.ring_deadline import end_overdue_rings
from workers.providers.http import make_client
from workers.providers.registry import adapter_for

NO_ANSWER = {"answered": 0, "busy": 0, "no_answer": 100, "failed": 0, "machine": 0}
OPTIONS = {"ring_timeout": 5, "time_limit": 600}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    accounts = [{"provider": "vobiz", "auth_id": auth_id, "auth_token": "tok", "cps": 50}
                for auth_id in ("MZRINGCALL", "MZRINGONLY")]
    with start_simulator({"accounts": accounts, "outcomes": NO_ANSWER}, speed=1.0, seed=5) as sim:
        yield sim


def ringing_attempt(db: psycopg.Connection, sim: RunningSimulator, auth_id: str, options: dict[str, Any],
                    start: int) -> tuple[int, str]:
    """A Vobiz call placed through the adapter and ringing at the carrier, its attempt `ringing` since 6 s
    ago (its ring timeout is 5 s): (attempt id, call uuid)."""
    account_id = add_account(db, name=f"ring-{auth_id}-{uuid.uuid4().hex[:6]}", provider="vobiz",
                             auth_id=auth_id, auth_token="tok", cps=50, max_concurrent=10,
                             base_url=sim.base_url, options=options)
    (number,) = numbers(1, start=start, area="917")
    campaign_id = load_campaign(f"ring-{auth_id}", [number])
    prepare_and_start(db, campaign_id, account_id, start=False, provider_options=OPTIONS,
                      retry_policy=NO_RETRIES)
    db.execute("UPDATE destination SET status = 'queued' WHERE campaign_id = %s", (campaign_id,))
    campaign = dial_store.load_campaign(db, campaign_id)
    assert campaign is not None
    dest_id = db.execute("SELECT id FROM destination WHERE campaign_id = %s", (campaign_id,)).fetchone()[0]
    batch_id = uuid.uuid4()
    (started,) = dial_store.start_attempts(db, campaign=campaign, batch_id=batch_id, lease_s=700,
                                           destinations=dial_store.queued_destinations(db, [dest_id]))
    creds, _ = load_account(db, account_id)
    with make_client() as client:
        accepted = adapter_for("vobiz").create_calls(client, creds, outbound_call(campaign, creds, batch_id,
                                                                                  [number]))
    call_uuid = accepted.request_uuids[0]  # Vobiz: request and call ids are one
    db.execute("UPDATE call_attempt SET status = 'ringing', sent_at = now() - interval '6 seconds', "
               "request_uuid = %s, call_uuid = %s WHERE id = %s", (call_uuid, call_uuid, started.attempt_id))
    return started.attempt_id, call_uuid


def test_an_unanswered_vobiz_call_past_its_ring_timeout_is_hung_up_unless_the_account_reads_ring_only(
        db: psycopg.Connection, sim: RunningSimulator) -> None:
    _, swept = ringing_attempt(db, sim, "MZRINGCALL", {}, 100)
    _, left = ringing_attempt(db, sim, "MZRINGONLY", {"hangup_on_ring": "ring"}, 200)
    with make_client() as client:
        report = end_overdue_rings(db, client)
    assert report.ended == 1 and not report.errors, report

    def calls() -> dict[str, dict[str, Any]]:
        return {c["call_uuid"]: c for c in sim.ledger()["calls"]}

    wait_for(lambda: calls()[swept]["status"] == "completed", 10, "the swept call ended")
    assert calls()[swept]["hung_up_by_api"] and calls()[swept]["outcome"] == "cancelled"
    # The ring-only account asked the carrier for hangup_on_ring = its ring timeout: the carrier ends it.
    wait_for(lambda: calls()[left]["status"] == "completed", 10, "the ring-only call ended by the carrier")
    assert not calls()[left]["hung_up_by_api"]
