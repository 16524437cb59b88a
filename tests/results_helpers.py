"""Shared pieces of the results-consumer tests: signed carrier callbacks built as each carrier signs them,
ledger/DB comparisons, and small waits. Everything talks to real processes; nothing here is a mock."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import psycopg
import redis
from psycopg.rows import dict_row

from campaigns.config import get_settings
from tests.polling import wait_for as wait_for  # re-exported: the tests that import it from here
from workers import redis_keys
from workers.providers.signatures import (
    bandwidth_callback_credentials,
    basic_auth_header,
    callback_url_secret,
    plivo_v3_signature,
    vobiz_v3_signature,
    voipbin_signature,
)

# The simulator's outcome words are ours, except that a machine needs machine detection switched on.
LEDGER_TO_OUTCOME = {
    "answered": "answered",
    "busy": "busy",
    "no_answer": "no_answer",
    "failed": "failed",
    "machine": "machine",
}
NO_RETRIES = {o: {"delay_s": 0, "max_attempts": 1} for o in ("busy", "no_answer", "failed", "unknown")}


def callback_path(provider: str, account_id: int, kind: str) -> str:
    return f"/callbacks/{provider}/{account_id}/{kind}"


def signed_url(
    api_url: str,
    provider: str,
    account_id: int,
    kind: str,
    *,
    batch: str | None = None,
    secret: str | None = None,
) -> str:
    """Our callback URL as the dialer hands it out (url secret and optional batch)."""
    query = {"s": callback_url_secret(account_id) if secret is None else secret}
    if batch:
        query["b"] = batch
    return f"{api_url}{callback_path(provider, account_id, kind)}?{urlencode(query)}"


def plivo_form(
    *,
    request_uuid: str,
    call_uuid: str,
    to: str,
    event: str = "Hangup",
    status: str = "completed",
    duration: int = 12,
    cause_code: int = 4000,
) -> dict[str, str]:
    form = {
        "From": "14155550100",
        "To": to.lstrip("+"),
        "RequestUUID": request_uuid,
        "ALegRequestUUID": request_uuid,
        "CallUUID": call_uuid,
        "ALegUUID": call_uuid,
        "Direction": "outbound",
        "Event": event,
        "CallStatus": status,
    }
    if event == "Hangup":
        form.update(
            HangupCause="NORMAL_CLEARING",
            HangupCauseName="Normal Hangup",
            HangupCauseCode=str(cause_code),
            HangupSource="Callee",
            Duration=str(duration),
            BillDuration=str(60 if duration else 0),
            StartTime="2025-01-01 10:00:00",
            EndTime="2025-01-01 10:00:30",
            TotalCost="0.00000",
        )
        if duration:
            form["AnswerTime"] = "2025-01-01 10:00:05"
    return form


def plivo_signed(
    url: str, form: dict[str, str], token: str, *, provider: str = "plivo", nonce: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a form callback signed as Plivo (V3) or Vobiz (V3, URL only) sign it."""
    nonce = nonce or str(secrets.randbits(63)).zfill(20)
    body = urlencode(form).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if provider == "plivo":
        signature = plivo_v3_signature(token, "POST", url, nonce, form)
        headers.update({"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce})
    else:
        signature = vobiz_v3_signature(token, url, nonce)
        headers.update({"X-Vobiz-Signature-V3": signature, "X-Vobiz-Signature-V3-Nonce": nonce})
    return body, headers


def tryvox_hangup(call_uuid: str, to: str, status: str = "completed") -> bytes:
    return orjson.dumps(
        {
            "event": "call.hangup",
            "call_uuid": call_uuid,
            "request_uuid": call_uuid,
            "to": to,
            "from": "+14155550100",
            "status": status,
            "duration": 7,
            "end_reason": "callee-hangup",
        }
    )


def voipbin_hangup(call_id: str, to: str, reason: str = "normal") -> bytes:
    data = {
        "id": call_id,
        "status": "hangup",
        "direction": "outgoing",
        "hangup_by": "remote",
        "hangup_reason": reason,
        "destination": {"type": "tel", "target": to},
        "tm_ringing": "2025-01-01 10:00:01.000000",
        "tm_progressing": "2025-01-01 10:00:04.000000",
        "tm_hangup": "2025-01-01 10:00:14.000000",
    }
    return orjson.dumps({"type": "call_hangup", "data": data})


def voipbin_headers(secret: str | None, body: bytes) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if secret:
        headers["X-VoIPBIN-Signature"] = voipbin_signature(secret, body)
    return headers


def bandwidth_disconnect(call_id: str, to: str, cause: str = "hangup") -> bytes:
    return orjson.dumps(
        {
            "eventType": "disconnect",
            "callId": call_id,
            "to": to,
            "from": "+14155550100",
            "direction": "outbound",
            "cause": cause,
            "startTime": "2025-01-01T10:00:00.000Z",
            "answerTime": "2025-01-01T10:00:03.000Z",
            "endTime": "2025-01-01T10:00:20.000Z",
        }
    )


def bandwidth_auth(account_id: int) -> dict[str, str]:
    return {"Authorization": basic_auth_header(*bandwidth_callback_credentials(account_id))}


def account_stats(client: redis.Redis, account_id: int) -> dict[str, int]:
    """The receiver's counters for an account (forged, replayed, malformed)."""
    raw = client.hgetall(redis_keys.account_stats(account_id))
    return {k.decode(): int(v) for k, v in raw.items()}


def event_count(conn: psycopg.Connection, account_id: int) -> int:
    row = conn.execute("SELECT count(*) FROM call_event WHERE account_id = %s", (account_id,)).fetchone()
    return int(row[0]) if row else 0


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return client.post(url, content=body, headers=headers)




def public_url() -> str:
    return get_settings().public_url


def attempt_rows(conn: psycopg.Connection, campaign_id: int) -> list[dict[str, Any]]:
    """A campaign's attempts with their destination's number, status, outcome and attempts made."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT a.*, d.number, d.status AS d_status, d.outcome AS d_outcome, d.attempts_made
               FROM call_attempt a JOIN destination d ON d.id = a.destination_id
               WHERE a.campaign_id = %s ORDER BY a.destination_id, a.attempt_no""",
            (campaign_id,),
        ).fetchall()
