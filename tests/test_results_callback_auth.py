"""The callback API refuses what a carrier did not send: forged, unsigned, wrong-secret and replayed callbacks
get 403, are counted, and store nothing; correctly signed ones are stored. Real `dialer api` process."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from campaigns.accounts import add_account
from tests.engine_harness import REPO, Stack, free_port, running_stack, wait_http
from tests.results_helpers import (
    account_stats,
    bandwidth_auth,
    bandwidth_disconnect,
    event_count,
    plivo_form,
    plivo_signed,
    signed_url,
    tryvox_hangup,
    voipbin_hangup,
    voipbin_headers,
)
from workers.providers.signatures import basic_auth_header

pytestmark = pytest.mark.timeout(120)

TOKENS = {
    "plivo": "plivo-tok",
    "vobiz": "vobiz-tok",
    "tryvox": "tvx_sk_test_x",
    "voipbin": "vb-tok",
    "bandwidth": "bw-pass",
}
VOIPBIN_SECRET = "vb-webhook-secret"


BANDWIDTH_OPTIONS = {"application_id": "app", "api_username": "api-user"}


@pytest.fixture(scope="module")
def api(database_url: str, redis_client: Any) -> Iterator[tuple[Stack, dict[str, int]]]:
    with running_stack(workers=0, beat=False) as stack:
        with psycopg.connect(database_url) as conn:
            ids = {
                p: add_account(
                    conn,
                    name=f"auth-{p}-{uuid.uuid4().hex[:6]}",
                    provider=p,
                    auth_id=f"AUTH{p}",
                    auth_token=TOKENS[p],
                    cps=10,
                    max_concurrent=10,
                    base_url="http://127.0.0.1:9",
                    webhook_secret=VOIPBIN_SECRET if p == "voipbin" else None,
                    options=BANDWIDTH_OPTIONS if p == "bandwidth" else None,
                )
                for p in TOKENS
            }
            ids["voipbin-nosecret"] = add_account(
                conn,
                name=f"auth-vb2-{uuid.uuid4().hex[:6]}",
                provider="voipbin",
                auth_id="AUTHvb2",
                auth_token="vb2",
                cps=10,
                max_concurrent=10,
                base_url="http://127.0.0.1:9",
            )
            conn.commit()
        yield stack, ids


def _callback(
    stack: Stack, provider: str, account_id: int, **wrong: Any
) -> tuple[str, bytes, dict[str, str]]:
    """A correctly signed hangup for `provider`, then spoiled as `wrong` says."""
    call = str(uuid.uuid4())
    to = "+12125550123"
    url = signed_url(stack.api_url, provider, account_id, "hangup", secret=wrong.get("secret"))
    if provider in ("plivo", "vobiz"):
        body, headers = plivo_signed(
            url, plivo_form(request_uuid=call, call_uuid=call, to=to), TOKENS[provider], provider=provider
        )
        name = f"X-{provider.capitalize()}-Signature-V3"
        if wrong.get("signature"):
            headers[name] = "AAAA" + headers[name][4:]
        if wrong.get("unsigned"):
            headers = {"Content-Type": headers["Content-Type"]}
        if wrong.get("tamper"):  # the signature of another body
            body = body.replace(b"completed", b"busy")
        return url, body, headers
    if provider == "tryvox":
        return url, tryvox_hangup(call, to), {"Content-Type": "application/json"}
    if provider == "voipbin":
        body = voipbin_hangup(call, to)
        secret = "not-the-secret" if wrong.get("signature") else VOIPBIN_SECRET
        secret = None if wrong.get("unsigned") else secret
        return url, body, voipbin_headers(secret, body)
    body = bandwidth_disconnect(call, to)
    headers = {"Content-Type": "application/json", **bandwidth_auth(account_id)}
    if wrong.get("signature"):
        headers["Authorization"] = basic_auth_header("dialer", "guessed-password")
    if wrong.get("unsigned"):
        del headers["Authorization"]
    return url, body, headers


FORGERIES = [
    ("plivo", {"signature": True}),
    ("plivo", {"unsigned": True}),
    ("plivo", {"tamper": True}),
    ("vobiz", {"signature": True}),
    ("vobiz", {"unsigned": True}),
    ("tryvox", {"secret": "0" * 32}),
    ("tryvox", {"secret": ""}),
    ("voipbin", {"signature": True}),
    ("voipbin", {"unsigned": True}),
    ("voipbin-nosecret", {"secret": "f" * 32}),
    ("bandwidth", {"signature": True}),
    ("bandwidth", {"unsigned": True}),
]


@pytest.mark.parametrize(("who", "wrong"), FORGERIES, ids=[f"{w}-{next(iter(k))}" for w, k in FORGERIES])
def test_forged_or_unsigned_callback_is_refused_counted_and_not_stored(
    api, db, redis_client, who, wrong
) -> None:
    stack, ids = api
    account_id = ids[who]
    provider = who.split("-")[0]
    before_events, before_stats = event_count(db, account_id), account_stats(redis_client, account_id)
    url, body, headers = _callback(stack, provider, account_id, **wrong)
    response = httpx.post(url, content=body, headers=headers)
    assert response.status_code == 403, response.text
    assert event_count(db, account_id) == before_events
    after = account_stats(redis_client, account_id)
    assert after.get("callbacks_forged", 0) == before_stats.get("callbacks_forged", 0) + 1


@pytest.mark.parametrize("who", ["plivo", "vobiz", "tryvox", "voipbin", "voipbin-nosecret", "bandwidth"])
def test_correctly_signed_callback_is_stored_and_acknowledged(api, db, redis_client, who) -> None:
    stack, ids = api
    account_id = ids[who]
    before = event_count(db, account_id)
    url, body, headers = _callback(stack, who.split("-")[0], account_id)
    response = httpx.post(url, content=body, headers=headers)
    assert response.status_code == (204 if who == "bandwidth" else 200), response.text
    assert event_count(db, account_id) == before + 1  # stored before the 2xx (invariant 4)


def test_a_signature_from_another_accounts_token_is_refused(api, db, redis_client) -> None:
    stack, ids = api
    # Signed with the Vobiz account's token, presented on the Plivo account's URL.
    url = signed_url(stack.api_url, "plivo", ids["plivo"], "hangup")
    call = str(uuid.uuid4())
    body, headers = plivo_signed(
        url, plivo_form(request_uuid=call, call_uuid=call, to="+12125550199"), TOKENS["vobiz"]
    )
    assert httpx.post(url, content=body, headers=headers).status_code == 403
    # A callback for a Plivo account posted on a path naming another provider.
    url = signed_url(stack.api_url, "tryvox", ids["plivo"], "hangup")
    assert (
        httpx.post(
            url, content=tryvox_hangup(call, "+12125550199"), headers={"Content-Type": "application/json"}
        ).status_code
        == 403
    )
    assert db.execute("SELECT count(*) FROM call_event WHERE call_uuid = %s", (call,)).fetchone() == (0,)


def test_replayed_plivo_callback_with_the_same_nonce_is_refused(api, db, redis_client) -> None:
    stack, ids = api
    account_id = ids["plivo"]
    url = signed_url(stack.api_url, "plivo", account_id, "hangup")
    call = str(uuid.uuid4())
    body, headers = plivo_signed(
        url, plivo_form(request_uuid=call, call_uuid=call, to="+12125550111"), TOKENS["plivo"]
    )
    assert httpx.post(url, content=body, headers=headers).status_code == 200
    before = account_stats(redis_client, account_id).get("callbacks_replayed", 0)
    replay = httpx.post(url, content=body, headers=headers)
    assert replay.status_code == 403
    assert account_stats(redis_client, account_id).get("callbacks_replayed", 0) == before + 1
    assert db.execute("SELECT count(*) FROM call_event WHERE call_uuid = %s", (call,)).fetchone() == (1,)


def test_api_answers_503_and_stores_nothing_when_postgres_is_unreachable(database_url, db) -> None:
    """A callback API whose database is a closed port: no 2xx for an event it did not store (invariant 4)."""
    port = free_port()
    dead_port = free_port()
    env = {
        **os.environ,
        "DIALER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DIALER_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{dead_port}/nowhere",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "workers.entrypoints.api.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health")
        call = str(uuid.uuid4())
        url = signed_url(base, "tryvox", 1, "hangup")
        response = httpx.post(
            url,
            content=tryvox_hangup(call, "+12125550100"),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 503
        assert response.elapsed.total_seconds() < 3.0, "a carrier (Vobiz: 3 s) must hear 503, not time out"
        assert db.execute("SELECT count(*) FROM call_event WHERE call_uuid = %s", (call,)).fetchone() == (0,)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
