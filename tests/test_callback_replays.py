"""Issue 20, items 1 and 7 and the "Signatures" point, on a real `dialer api` process, Postgres and Redis:
signature versions do not share nonces, every call's callback URL needs its ticket, a nonce is kept as long
as its ticket is valid, an attempt opts out once, a Plivo V3 body with another reading is refused, and a
signed VoIPbin webhook past its window is refused."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import psycopg
import pytest
from psycopg.types.json import Jsonb

from campaigns.accounts import add_account
from tests.engine_harness import Stack, running_stack
from tests.results_helpers import (
    bandwidth_auth,
    bandwidth_disconnect,
    plivo_form,
    plivo_signed,
    signed_url,
    tryvox_hangup,
    voipbin_headers,
)
from workers import redis_keys
from workers.providers.signatures import (
    callback_url_secret,
    plivo_v3_signature,
    vobiz_v3_signature,
)
from workers.providers.signed_params import one_reading

pytestmark = pytest.mark.timeout(120)
NUMBER = "+12125550188"
WEBHOOK_SECRET = "whsec-replays-0123456789"


@pytest.fixture(scope="module")
def api(database_url: str, redis_client: Any) -> Iterator[tuple[Stack, dict[str, int]]]:
    specs = {
        "plivo": ("plivo", None), "vobiz": ("vobiz", {"accept_v2_signatures": True}),
        "tryvox": ("tryvox", None), "voipbin": ("voipbin", None),
        "bandwidth": ("bandwidth", {"application_id": "app-1", "api_username": "bw-user"}),
    }
    with running_stack(workers=0, beat=False) as stack:
        with psycopg.connect(database_url) as conn:
            ids = {name: add_account(conn, name=f"replay-{name}-{uuid.uuid4().hex[:6]}", provider=provider,
                                     auth_id=f"AUTH{name}", auth_token=f"{name}-token", cps=10,
                                     max_concurrent=10, base_url="http://127.0.0.1:9", options=options,
                                     webhook_secret=WEBHOOK_SECRET if name == "voipbin" else None)
                   for name, (provider, options) in specs.items()}
            conn.commit()
        yield stack, ids


def _events(db: psycopg.Connection, account_id: int) -> int:
    row = db.execute("SELECT count(*) FROM call_event WHERE account_id = %s", (account_id,)).fetchone()
    return int(row[0]) if row else 0


def _stored(db: psycopg.Connection, call: str) -> int:
    row = db.execute("SELECT count(*) FROM call_event WHERE call_uuid = %s", (call,)).fetchone()
    return int(row[0]) if row else 0


# --- item 1: a V3 signature is not a V2 signature for a dotted nonce ---------------------------------------

def test_a_vobiz_v3_signature_replayed_as_v2_with_its_nonce_behind_a_dot_is_refused(api, db) -> None:
    stack, ids = api
    account_id = ids["vobiz"]
    url = signed_url(stack.api_url, "vobiz", account_id, "hangup", batch=str(uuid.uuid4()))
    call = str(uuid.uuid4())
    nonce = "81723645"
    form = plivo_form(request_uuid=call, call_uuid=call, to="+12125550123")
    body, headers = plivo_signed(url, form, "vobiz-token", provider="vobiz", nonce=nonce)
    assert httpx.post(url, content=body, headers=headers).status_code == 200
    before = _events(db, account_id)
    assert httpx.post(url, content=body, headers=headers).status_code == 403  # the V3 replay
    sig = vobiz_v3_signature("vobiz-token", url, nonce)
    # V2 signs scheme://host/path + nonce: with nonce "." + N that is exactly V3's string for N.
    v2 = {"Content-Type": "application/x-www-form-urlencoded", "X-Vobiz-Signature-V2": sig,
          "X-Vobiz-Signature-V2-Nonce": f".{nonce}"}
    replay = httpx.post(url, content=urlencode({**form, "CallStatus": "busy"}), headers=v2)
    assert replay.status_code == 403 and replay.text == "forbidden"
    assert _events(db, account_id) == before


# --- item 7: every call URL needs its ticket; a nonce lives as long as the ticket -----------------------

def _unticketed(stack: Stack, provider: str, account_id: int) -> tuple[str, bytes, dict[str, str]]:
    """A correctly authenticated hangup at the ticketless `?s=` form of a call's URL."""
    url = signed_url(stack.api_url, provider, account_id, "hangup", secret=callback_url_secret(account_id))
    call = str(uuid.uuid4())
    if provider == "plivo":
        body, headers = plivo_signed(url, plivo_form(request_uuid=call, call_uuid=call, to=NUMBER),
                                     "plivo-token")
        return url, body, headers
    if provider == "tryvox":
        return url, tryvox_hangup(call, NUMBER), {"Content-Type": "application/json"}
    return url, bandwidth_disconnect(call, NUMBER), {"Content-Type": "application/json",
                                                      **bandwidth_auth(account_id)}


@pytest.mark.parametrize("provider", ["plivo", "tryvox", "bandwidth"])
def test_a_call_callback_without_its_ticket_is_refused(api, db, provider: str) -> None:
    stack, ids = api
    url, body, headers = _unticketed(stack, provider, ids[provider])
    before = _events(db, ids[provider])
    response = httpx.post(url, content=body, headers=headers)
    assert response.status_code == 403 and response.text == "forbidden"
    assert _events(db, ids[provider]) == before


def test_a_plivo_nonce_is_kept_until_its_ticket_expires(api, redis_client) -> None:
    stack, ids = api
    valid_s = 3 * 3600
    url = signed_url(stack.api_url, "plivo", ids["plivo"], "hangup", valid_s=valid_s)
    call, nonce = str(uuid.uuid4()), secrets.token_hex(10)
    body, headers = plivo_signed(url, plivo_form(request_uuid=call, call_uuid=call, to=NUMBER), "plivo-token",
                                 nonce=nonce)
    assert httpx.post(url, content=body, headers=headers).status_code == 200
    ttl = redis_client.ttl(redis_keys.callback_nonce("plivo", ids["plivo"], "v3", nonce))
    assert ttl >= valid_s - 60  # not 900 s, after which the same signed request passed again


def _opt_out_attempt(conn: psycopg.Connection, account_id: int) -> tuple[int, uuid.UUID, str]:
    batch, call_id = uuid.uuid4(), str(uuid.uuid4())
    campaign = conn.execute(
        "INSERT INTO campaign (name, account_id, caller_id, provider_options, state) "
        "VALUES ('opt-out-once', %s, '+14155550100', %s, 'running') RETURNING id",
        (account_id, Jsonb({"message": "Your bill is due.", "opt_out_digit": "9"})),
    ).fetchone()[0]
    destination = conn.execute(
        "INSERT INTO destination (campaign_id, line_no, number, timezone, status, attempts_made) "
        "VALUES (%s, 2, %s, 'America/New_York', 'answered', 1) RETURNING id", (campaign, NUMBER),
    ).fetchone()[0]
    attempt = conn.execute(
        "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, batch_id, status, "
        "call_uuid, lease_expires_at) VALUES (%s, %s, %s, 1, %s, 'answered', %s, now() + interval '1 hour') "
        "RETURNING id", (destination, campaign, account_id, batch, call_id),
    ).fetchone()[0]
    return attempt, batch, call_id


def _listed(conn: psycopg.Connection, account_id: int) -> bool:
    return conn.execute("SELECT 1 FROM account_dnc_number WHERE account_id = %s AND number = %s",
                        (account_id, NUMBER)).fetchone() is not None


def test_an_attempt_opts_out_once_so_a_replayed_or_resent_keypress_never_relists_a_removed_number(
    api, database_url, redis_client
) -> None:
    stack, _ = api
    with psycopg.connect(database_url, autocommit=True) as conn:
        account_id = add_account(conn, name=f"once-{uuid.uuid4().hex[:6]}", provider="plivo",
                                 auth_id="MAONCE", auth_token="once-token", cps=10, max_concurrent=10,
                                 base_url="http://127.0.0.1:9")
        attempt, batch, call_id = _opt_out_attempt(conn, account_id)
        url = signed_url(stack.api_url, "plivo", account_id, "keypress", batch=str(batch))
        form = {**plivo_form(request_uuid=call_id, call_uuid=call_id, to=NUMBER, event="StartApp",
                             status="in-progress"), "Digits": "9"}
        nonce = secrets.token_hex(10)
        body, headers = plivo_signed(url, form, "once-token", nonce=nonce)
        assert httpx.post(url, content=body, headers=headers).status_code == 200
        assert _listed(conn, account_id)
        conn.execute("DELETE FROM account_dnc_number WHERE account_id = %s", (account_id,))  # the operator
        # The nonce is gone (expired, or Redis lost it) while the ticket is still valid: the captured
        # keypress is presented again.
        redis_client.delete(redis_keys.callback_nonce("plivo", account_id, "v3", nonce))
        assert httpx.post(url, content=body, headers=headers).status_code == 200
        assert not _listed(conn, account_id)
        # The carrier sends the press again under a fresh nonce: still this attempt's one opt-out.
        body, headers = plivo_signed(url, form, "once-token")
        assert httpx.post(url, content=body, headers=headers).status_code == 200
        assert not _listed(conn, account_id)
        digits, opted_at = conn.execute("SELECT opt_out_digits, opted_out_at FROM call_attempt WHERE id = %s",
                                        (attempt,)).fetchone()
        assert digits == "9" and opted_at is not None


# --- item 7, second half: Plivo V3's POST string has no separators ---------------------------------------

def test_the_issue_pair_has_one_reading_each_way() -> None:
    assert one_reading({"CallUUID": ["call-a-1"], "Duration": ["30"]})
    assert not one_reading({"CallUUID": ["call-a-1Duration30"]})
    assert not one_reading({"To": ["talCost0.5"]})  # also reads To=… TotalCost=0.5
    assert not one_reading({"CallUUID": ["a"], "Digits": ["9", "9"]})  # a repeated key


def test_a_plivo_v3_body_read_another_way_under_the_same_signature_is_refused(api, db) -> None:
    stack, ids = api
    account_id = ids["plivo"]
    url = signed_url(stack.api_url, "plivo", account_id, "hangup", batch=str(uuid.uuid4()))
    nonce = str(secrets.randbits(63)).zfill(20)
    call = f"call-a-{uuid.uuid4().hex[:8]}"
    carrier = {"CallUUID": call, "Duration": "30"}
    other = {"CallUUID": f"{call}Duration30"}  # the same signed text: CallUUID<call>Duration30
    sig = plivo_v3_signature("plivo-token", "POST", url, nonce, carrier)
    assert sig == plivo_v3_signature("plivo-token", "POST", url, nonce, other)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Plivo-Signature-V3": sig,
               "X-Plivo-Signature-V3-Nonce": nonce}
    forged = httpx.post(url, content=urlencode(other), headers=headers)
    assert forged.status_code == 403 and _stored(db, f"{call}Duration30") == 0
    assert httpx.post(url, content=urlencode(carrier), headers=headers).status_code == 200
    assert _stored(db, call) == 1
    # A whole hang-up whose Duration is folded into the value before it (Direction) is refused too.
    full = plivo_form(request_uuid=call, call_uuid=f"{call}-b", to=NUMBER, duration=12)
    folded = {k: v for k, v in full.items() if k != "Duration"} | {"Direction": "outboundDuration12"}
    nonce = str(secrets.randbits(63)).zfill(20)
    sig = plivo_v3_signature("plivo-token", "POST", url, nonce, full)
    assert sig == plivo_v3_signature("plivo-token", "POST", url, nonce, folded)
    headers = {**headers, "X-Plivo-Signature-V3": sig, "X-Plivo-Signature-V3-Nonce": nonce}
    assert httpx.post(url, content=urlencode(folded), headers=headers).status_code == 403
    assert _stored(db, f"{call}-b") == 0


# --- VoIPbin: a per-account webhook has no ticket; a signed one is bounded by its own times ----------------

def _voipbin_hangup(call: str, ended: datetime) -> bytes:
    def ts(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    data = {"id": call, "status": "hangup", "direction": "outgoing", "hangup_by": "remote",
            "hangup_reason": "normal", "destination": {"type": "tel", "target": NUMBER},
            "tm_create": ts(ended - timedelta(seconds=20)), "tm_update": ts(ended),
            "tm_ringing": ts(ended - timedelta(seconds=18)),
            "tm_progressing": ts(ended - timedelta(seconds=15)),
            "tm_hangup": ts(ended)}
    return orjson.dumps({"type": "call_hangup", "data": data})


def test_a_signed_voipbin_webhook_older_than_the_grace_is_refused_and_a_fresh_one_taken(api, db) -> None:
    stack, ids = api
    account_id = ids["voipbin"]
    secret = callback_url_secret(account_id)
    webhook = signed_url(stack.api_url, "voipbin", account_id, "status", secret=secret)
    now = datetime.now(UTC).replace(tzinfo=None)
    old_call, fresh_call = str(uuid.uuid4()), str(uuid.uuid4())
    old = _voipbin_hangup(old_call, now - timedelta(hours=2))  # captured two hours ago, sent again now
    response = httpx.post(webhook, content=old, headers=voipbin_headers(WEBHOOK_SECRET, old))
    assert response.status_code == 403 and _stored(db, old_call) == 0
    fresh = _voipbin_hangup(fresh_call, now - timedelta(seconds=5))
    taken = httpx.post(webhook, content=fresh, headers=voipbin_headers(WEBHOOK_SECRET, fresh))
    assert taken.status_code == 200
    assert _stored(db, fresh_call) == 1
    # Its per-call form (kind hangup) is not a webhook: without a ticket it is refused.
    url = signed_url(stack.api_url, "voipbin", account_id, "hangup", secret=callback_url_secret(account_id))
    fresh = _voipbin_hangup(str(uuid.uuid4()), now)
    assert httpx.post(url, content=fresh, headers=voipbin_headers(WEBHOOK_SECRET, fresh)).status_code == 403

