"""What a refused or unmatched callback leaves in Postgres (issue 20 items 8 and 9), on a real `dialer api`:
a refused callback is kept without its credentials (Bandwidth's Authorization decodes to the account's
callback password), with a bounded body, and at most DIALER_REJECTED_CALLBACKS_PER_HOUR of them per account
and hour (past that only counts grow); an event that matches no call keeps a bounded payload."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from campaigns.accounts import add_account
from campaigns.api_keys import create_api_key
from campaigns.config import get_settings
from campaigns.store.unmatched_events import bounded_payload
from tests.engine_harness import Stack, running_stack
from tests.results_helpers import bandwidth_auth, bandwidth_disconnect, signed_url
from workers.providers.signatures import bandwidth_callback_credentials

pytestmark = pytest.mark.timeout(180)

CAP = 100  # DIALER_REJECTED_CALLBACKS_PER_HOUR's default
BODY_BYTES = 4096  # DIALER_REJECTED_CALLBACK_BODY_BYTES's default
RAW_BYTES = 4096  # DIALER_UNMATCHED_EVENT_RAW_BYTES's default
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def api(database_url: str, redis_client: Any) -> Iterator[Stack]:
    get_settings.cache_clear()
    with running_stack(workers=0, beat=False) as stack:
        yield stack


def _bandwidth_account(db: psycopg.Connection) -> int:
    return add_account(db, name=f"bw-bounds-{uuid.uuid4().hex[:8]}", provider="bandwidth",
                       auth_id=str(5550000 + int(uuid.uuid4().int % 9999)), auth_token="bw-password",
                       cps=10, max_concurrent=10, base_url="http://127.0.0.1:9",
                       options={"api_username": "bw-user", "application_id": str(uuid.uuid4())})


def _malformed(padding: int = 0) -> bytes:
    """A Bandwidth disconnect the receiver refuses (it ended in the year 9998), padded to any size."""
    event = orjson.loads(bandwidth_disconnect(str(uuid.uuid4()), "+12125550100"))
    event["endTime"] = "9998-01-01T10:00:20.000Z"
    if padding:
        event["padding"] = "x" * padding
    return orjson.dumps(event)


def _kept(db: psycopg.Connection, account_id: int) -> list[tuple[Any, ...]]:
    return db.execute("SELECT body, headers FROM rejected_callback WHERE account_id = %s ORDER BY id",
                      (account_id,)).fetchall()


def _clear_of_the_hour_boundary(seconds: float) -> None:
    """Wait, if the clock hour ends within `seconds`, for the next one: the cap counts per clock hour."""
    now = datetime.now(UTC)
    left = 3600 - (now.minute * 60 + now.second + now.microsecond / 1e6)
    if left < seconds:
        time.sleep(left + 0.5)


def test_a_refused_bandwidth_callback_is_kept_without_its_password_or_any_credential(
        api: Stack, db: psycopg.Connection) -> None:
    account_id = _bandwidth_account(db)
    password = bandwidth_callback_credentials(account_id)[1]
    headers = {**bandwidth_auth(account_id), "Content-Type": "application/json", "User-Agent": "BandwidthAPI",
               "Cookie": "session=cookie-secret", "X-Plivo-Signature-V3": "signature-secret",
               "X-Vobiz-Signature": "vobiz-signature-secret"}
    answer = httpx.post(signed_url(api.api_url, "bandwidth", account_id, "hangup"), content=_malformed(),
                        headers=headers, timeout=10)
    assert answer.status_code == 400, answer.text
    ((body, kept_headers),) = _kept(db, account_id)
    assert kept_headers.get("content-type") == "application/json"
    assert kept_headers.get("user-agent") == "BandwidthAPI"  # what an operator needs is still there
    stored = repr((body, kept_headers)).lower()
    for secret in (password, headers["Authorization"].split()[1], "cookie-secret", "signature-secret",
                   base64.b64decode(headers["Authorization"].split()[1]).decode()):
        assert secret.lower() not in stored, secret
    assert not {"authorization", "cookie", "x-plivo-signature-v3", "x-vobiz-signature"} & set(kept_headers)


def test_a_refused_callback_keeps_a_bounded_body(api: Stack, db: psycopg.Connection) -> None:
    account_id = _bandwidth_account(db)
    big = _malformed(padding=60_000)
    answer = httpx.post(signed_url(api.api_url, "bandwidth", account_id, "hangup"), content=big,
                        headers={**bandwidth_auth(account_id), **JSON}, timeout=10)
    assert answer.status_code == 400
    ((body, _),) = _kept(db, account_id)
    assert len(body.encode()) <= BODY_BYTES + 100
    assert body.startswith(big[:100].decode()) and f"{len(big) - BODY_BYTES} more bytes not kept" in body


def _unkept_counted(api: Stack, db: psycopg.Connection, account_id: int) -> float:
    key = create_api_key(db, name="bounds-metrics", role="admin").key
    text = httpx.get(f"{api.api_url}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=10).text
    line = f'dialer_rejected_callbacks_unkept_total{{account="{account_id}"}} '
    values = [float(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line)]
    return values[0] if values else 0.0


def test_past_the_hourly_cap_a_refused_callback_is_counted_and_not_kept(api: Stack,
                                                                          db: psycopg.Connection) -> None:
    account_id = _bandwidth_account(db)
    url = signed_url(api.api_url, "bandwidth", account_id, "hangup")
    headers = {**bandwidth_auth(account_id), "Content-Type": "application/json"}
    _clear_of_the_hour_boundary(60)
    with httpx.Client(headers=headers, timeout=10) as client:
        statuses = [client.post(url, content=_malformed()).status_code for _ in range(CAP + 1)]
    assert statuses == [400] * (CAP + 1), "each is still told why it was refused"
    assert len(_kept(db, account_id)) == CAP
    row = db.execute("SELECT received FROM rejected_callback_hour WHERE account_id = %s",
                     (account_id,)).fetchall()
    assert row == [(CAP + 1,)]
    assert _unkept_counted(api, db, account_id) == 1


def test_an_event_that_matches_no_call_keeps_a_bounded_payload(api: Stack, db: psycopg.Connection) -> None:
    account_id = _bandwidth_account(db)
    made_up = f"c-{uuid.uuid4()}"
    event = orjson.loads(bandwidth_disconnect(made_up, "+12125550100"))
    event["padding"] = "y" * 60_000
    answer = httpx.post(signed_url(api.api_url, "bandwidth", account_id, "hangup"),
                        content=orjson.dumps(event), headers={**bandwidth_auth(account_id), **JSON},
                        timeout=10)
    assert answer.status_code < 300, answer.text
    stored = db.execute("SELECT octet_length(payload::text), payload, applied_at FROM call_event "
                        "WHERE account_id = %s AND call_uuid = %s", (account_id, made_up)).fetchone()
    assert stored is not None
    size, payload, applied_at = stored
    assert applied_at is None  # it matched no call
    assert size <= RAW_BYTES + 2048, size  # the raw part bounded; the parsed reading is small and whole
    assert payload["raw"]["callId"] == made_up and "padding" not in payload["raw"]
    assert payload["raw_cut"]["bytes"] > 60_000 and payload["parsed"]["call_uuid"] == made_up


def test_a_payload_within_the_bound_is_kept_as_it_is_and_a_larger_one_keeps_the_fields_that_fit() -> None:
    small = {"raw": {"callId": "c-1", "to": "+12125550100"}, "parsed": {"call_uuid": "c-1"},
             "source": "callback"}
    assert bounded_payload(small, RAW_BYTES) is small
    large = {**small, "raw": {"callId": "c-1", "huge": "z" * 10_000, "to": "+12125550100"}}
    cut = bounded_payload(large, RAW_BYTES)
    assert cut["raw"] == {"callId": "c-1", "to": "+12125550100"}  # the small field after the huge one too
    assert cut["parsed"] == small["parsed"] and cut["raw_cut"]["bytes"] > 10_000
    assert len(orjson.dumps(cut["raw"])) <= RAW_BYTES
