"""Bandwidth machine detection "hangup" hangs up: its detection is asynchronous (machineDetectionComplete, a
callback of its own), so our answer to that callback must end a machine-answered call. The seed has no
machine detection, so both readings of how that callback ends a call are simulated (the answer ignored and
Update Call needed, or the answer run as BXML), with and without the assumed Update Call endpoint; a
"true" campaign's machine goes on. Real `dialer api` process, simulator as the carrier."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from campaigns.accounts import add_account, load_account
from campaigns.states import Outcome
from tests.engine_harness import Stack, running_stack
from tests.polling import wait_for
from tests.sim_helpers import RunningSimulator, start_simulator
from workers.callbacks.answer_documents import hangup_document
from workers.callbacks.machine_hangup import hangs_up_on_machine
from workers.callbacks.urls import callback_urls_for
from workers.providers.calls import CallbackUrls, EventKind, OutboundCall
from workers.providers.errors import Rejected
from workers.providers.http import make_client
from workers.providers.registry import adapter_for

pytestmark = pytest.mark.timeout(120)

APP, API_USER, PASSWORD = "7fc9698a-b04a-468b-9e8f-91238c0d0086", "bw-api-user", "bw-password"
TALK_S = 40  # carrier seconds a machine would talk for (4 s of real time at SPEED)
SPEED = 10
# auth id -> the account's readings (simulator.config.Account, bandwidth_*).
ACCOUNTS: dict[str, dict[str, str]] = {
    "91900001": {},  # the answer ignored; Update Call ends the call (Bandwidth's webhook page)
    "91900002": {"bandwidth_machine_reply": "bxml", "bandwidth_call_api": "missing"},  # only the answer can
    "91900003": {"bandwidth_machine_reply": "bxml"},  # both: the second finds the call ended
}
CONFIG = {
    "accounts": [{"provider": "bandwidth", "auth_id": auth_id, "auth_token": PASSWORD, "cps": 20,
                  "api_username": API_USER, "application_id": APP, **readings}
                 for auth_id, readings in ACCOUNTS.items()],
    "outcomes": {"answered": 0, "busy": 0, "no_answer": 0, "failed": 0, "machine": 100,
                 "ring_time": [1, 1], "talk_time": [TALK_S, TALK_S]},
}


@pytest.fixture(scope="module")
def env(database_url: str, redis_client: Any) -> Iterator[tuple[RunningSimulator, Stack]]:
    with start_simulator(CONFIG, speed=SPEED, seed=19) as sim, running_stack(workers=0, beat=False) as stack:
        yield sim, stack


def _dial(conn: psycopg.Connection, sim: RunningSimulator, auth_id: str,
          machine_detection: str) -> tuple[str, uuid.UUID]:
    """A campaign with this machine_detection, one attempt, and its call placed through the adapter with the
    dialer's own callback URLs; the call id and the attempt's batch."""
    account_id = add_account(
        conn, name=f"bw-machine-{uuid.uuid4().hex[:8]}", provider="bandwidth", auth_id=auth_id,
        auth_token=PASSWORD, cps=20, max_concurrent=20, base_url=sim.base_url,
        options={"api_username": API_USER, "application_id": APP},
    )
    campaign = conn.execute(
        "INSERT INTO campaign (name, account_id, caller_id, provider_options, state) "
        "VALUES ('machine', %s, '+14155550100', %s, 'running') RETURNING id",
        (account_id, Jsonb({"machine_detection": machine_detection, "message": "Hello"})),
    ).fetchone()[0]  # type: ignore[index]
    number = f"+1212555{uuid.uuid4().int % 10000:04d}"
    destination = conn.execute(
        "INSERT INTO destination (campaign_id, line_no, number, timezone, status, attempts_made) "
        "VALUES (%s, 2, %s, 'America/New_York', 'dialing', 1) RETURNING id", (campaign, number),
    ).fetchone()[0]  # type: ignore[index]
    batch = uuid.uuid4()
    conn.execute(
        "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, batch_id, status, "
        "lease_expires_at) VALUES (%s, %s, %s, 1, %s, 'sent', now() + interval '1 hour')",
        (destination, campaign, account_id, batch),
    )
    conn.commit()
    creds, _ = load_account(conn, account_id)
    call = OutboundCall(
        caller_id="+14155550100", destinations=[number], tag=str(batch), machine_detection=machine_detection,
        callbacks=callback_urls_for("bandwidth", account_id, str(batch), machine_detection=True),
    )
    with make_client() as client:
        accepted = adapter_for("bandwidth").create_calls(client, creds, call)
    call_id = accepted.calls[0].call_uuid
    assert call_id is not None
    return call_id, batch


def _ended(sim: RunningSimulator, call_id: str) -> dict[str, Any]:
    def ended() -> tuple[dict[str, Any]] | None:
        call = next((c for c in sim.ledger()["calls"] if c["call_uuid"] == call_id), None)
        return (call,) if call is not None and call["status"] == "completed" else None

    found: tuple[dict[str, Any]] = wait_for(ended, 30, f"call {call_id} ended")
    return found[0]


@pytest.mark.parametrize("auth_id", sorted(ACCOUNTS))
def test_a_hangup_campaigns_machine_is_hung_up_in_every_reading(
    env: Any, database_url: str, auth_id: str
) -> None:
    sim, _ = env
    with psycopg.connect(database_url, autocommit=True) as conn:
        call_id, batch = _dial(conn, sim, auth_id, "hangup")
        call = _ended(sim, call_id)
        assert call["outcome"] == "machine" and call["hung_up_by_api"], call
        assert call["duration"] < TALK_S / 2, call  # ended at the machine result, not after the message

        def settled() -> tuple[Any, ...] | None:
            return conn.execute("SELECT status, outcome FROM call_attempt WHERE batch_id = %s AND "
                                "status = 'completed'", (batch,)).fetchone()

        assert tuple(wait_for(settled, 20, "the attempt settled")) == ("completed", "machine")


def test_a_true_campaigns_machine_is_reported_and_not_hung_up(env: Any, database_url: str) -> None:
    sim, _ = env
    with psycopg.connect(database_url) as conn:
        call_id, _ = _dial(conn, sim, "91900003", "true")
        call = _ended(sim, call_id)
        assert call["outcome"] == "machine" and not call["hung_up_by_api"], call
        assert call["duration"] >= TALK_S
        stored = conn.execute(
            "SELECT count(*) FROM call_event WHERE call_uuid = %s AND kind = 'machine'", (call_id,)
        ).fetchone()
    assert stored is not None and stored[0] >= 1


# --- pure parts ------------------------------------------------------------------------------------------
def test_the_machine_answer_is_bxml_hangup_only_for_a_hangup_campaigns_machine() -> None:
    media_type, body = hangup_document("bandwidth")
    assert media_type == "application/xml" and "<Response><Hangup/></Response>" in body
    detected = {"callId": "c-1", "eventType": "machineDetectionComplete"}
    adapter = adapter_for("bandwidth")

    def parsed(value: str) -> Any:
        from tests.test_providers_callbacks import json_callback

        return adapter.parse_callback(json_callback({**detected, "machineDetectionResult": {"value": value}}))

    machine, human = parsed("answering-machine"), parsed("human")
    assert machine.kind == EventKind.MACHINE
    assert hangs_up_on_machine(machine, {"machine_detection": "hangup"})
    assert not hangs_up_on_machine(machine, {"machine_detection": "true"})
    assert not hangs_up_on_machine(human, {"machine_detection": "hangup"})
    # An end-of-message tone is a machine too (Bandwidth's machineDetectionComplete page).
    assert parsed("tone-detected").outcome == Outcome.MACHINE


URLS = CallbackUrls(answer_url="https://cb.test/answer", hangup_url="https://cb.test/hangup")


@pytest.mark.parametrize(("caller", "destination", "line"), [
    ("+14155550100", "sip:alice@example.com", "page, Supported Parameters: `to`"),
    ("sip:us@example.com", "+14155550001", "page, Supported Parameters: `from`"),
])
def test_bandwidth_refuses_a_sip_uri_before_sending(caller: str, destination: str, line: str) -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(201, json={})

    transport = httpx.MockTransport(record)
    account = load_account_stub()
    with make_client(transport=transport) as client, pytest.raises(Rejected, match=line):
        adapter_for("bandwidth").create_calls(client, account, OutboundCall(caller, [destination], URLS))
    assert sent == []
    support = adapter_for("bandwidth").traits.options
    assert support.destination_kinds == {"tel"} and support.machine_detection_modes == {"true", "hangup"}
    assert support.supported == {"audio_url"}  # the page has none of the other options


def load_account_stub() -> Any:
    from workers.providers.calls import AccountCredentials

    return AccountCredentials(5, "bandwidth", "55555555", PASSWORD, "https://voice.bandwidth.test",
                              options={"application_id": APP, "api_username": API_USER})
