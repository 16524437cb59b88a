"""The callback receiver against hostile input, on a real `dialer api` process: replayed Vobiz signatures,
cross-account events, poison values, oversized bodies and made-up account ids each get a 4xx, apply
nothing, and are counted; a poison event never fails its neighbours."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import psycopg
import pytest

from campaigns.accounts import add_account
from tests.engine_harness import Stack, running_stack
from tests.results_helpers import (
    account_stats,
    plivo_form,
    plivo_signed,
    signed_url,
    tryvox_hangup,
    wait_for,
)
from workers import redis_keys
from workers.callbacks import tickets
from workers.callbacks.applier import apply_events, by_provider_ids
from workers.providers.signatures import callback_url_secret as callback_url_secret_of

pytestmark = pytest.mark.timeout(120)
NO_SLOTS = (lambda *a: None, lambda *a: None)


@pytest.fixture(scope="module")
def api(database_url: str, redis_client: Any) -> Iterator[tuple[Stack, dict[str, int]]]:
    with running_stack(workers=0, beat=False) as stack:
        with psycopg.connect(database_url) as conn:
            ids = {name: add_account(conn, name=f"hard-{name}-{uuid.uuid4().hex[:6]}", provider=provider,
                                     auth_id=f"AUTH{name}", auth_token=f"{name}-token", cps=10,
                                     max_concurrent=10,
                                     base_url="http://127.0.0.1:9")
                   for name, provider in (("vobiz", "vobiz"), ("tryvox-a", "tryvox"), ("tryvox-b", "tryvox"),
                                          ("plivo", "plivo"))}
            conn.commit()
        yield stack, ids


def _vobiz_hangup(stack: Stack, account_id: int, call: str, *, status: str = "completed",
                  url: str | None = None, nonce: str | None = None) -> tuple[str, bytes, dict[str, str]]:
    url = url or signed_url(stack.api_url, "vobiz", account_id, "hangup")
    form = plivo_form(request_uuid=call, call_uuid=call, to="+12125550123", status=status)
    body, headers = plivo_signed(url, form, "vobiz-token", provider="vobiz", nonce=nonce)
    return url, body, headers


def _stored(db: psycopg.Connection, call: str) -> int:
    row = db.execute("SELECT count(*) FROM call_event WHERE call_uuid = %s", (call,)).fetchone()
    return int(row[0]) if row else 0


# --- Vobiz replays ---------------------------------------------------------------------------------------

def test_a_captured_vobiz_signature_resent_with_a_fresh_plivo_nonce_beside_it_is_refused(api, db,
                                                                                       redis_client) -> None:
    stack, ids = api
    account_id = ids["vobiz"]
    call = str(uuid.uuid4())
    url, body, headers = _vobiz_hangup(stack, account_id, call)
    assert httpx.post(url, content=body, headers=headers).status_code == 200
    replayed_before = account_stats(redis_client, account_id).get("callbacks_replayed", 0)
    # The attacker keeps the captured Vobiz signature and nonce, changes the body (Vobiz signs no params),
    # and adds a fresh nonce under the header the old check looked at first.
    other = str(uuid.uuid4())
    _, forged_body, _ = _vobiz_hangup(stack, account_id, other, status="busy")
    forged = {**headers, "X-Plivo-Signature-V3-Nonce": secrets.token_hex(8)}
    response = httpx.post(url, content=forged_body, headers=forged)
    assert response.status_code == 403 and response.text == "forbidden"
    assert _stored(db, other) == 0
    assert account_stats(redis_client, account_id).get("callbacks_replayed", 0) == replayed_before + 1


def test_a_vobiz_nonce_is_remembered_as_long_as_its_url_is_valid(api, redis_client) -> None:
    stack, ids = api
    account_id = ids["vobiz"]
    url = signed_url(stack.api_url, "vobiz", account_id, "hangup", valid_s=3 * 86400)
    nonce = secrets.token_hex(10)
    url, body, headers = _vobiz_hangup(stack, account_id, str(uuid.uuid4()), url=url, nonce=nonce)
    assert httpx.post(url, content=body, headers=headers).status_code == 200
    ttl = redis_client.ttl(redis_keys.callback_nonce("vobiz", account_id, "v3", nonce))
    assert ttl > 2 * 86400  # not the 15 minutes that let a captured signature through again afterwards
    # Plivo V3 signs the body too, and yet a keypress replayed after a short memory listed a number again
    # (issue 20 item 7): its nonce is kept as long, test_callback_tickets.py.


def test_a_vobiz_callback_whose_batch_is_only_in_the_unsigned_query_is_refused(api, db) -> None:
    stack, ids = api
    account_id = ids["vobiz"]
    call = str(uuid.uuid4())
    url = signed_url(stack.api_url, "vobiz", account_id, "hangup", secret="x", batch=str(uuid.uuid4()))
    url, body, headers = _vobiz_hangup(stack, account_id, call, url=url)
    assert httpx.post(url, content=body, headers=headers).status_code == 403
    assert _stored(db, call) == 0


@pytest.mark.parametrize("spoil", ["other-batch", "expired", "bad-mac", "other-kind"])
def test_a_ticket_that_was_not_issued_for_this_url_is_refused(api, db, spoil: str) -> None:
    stack, ids = api
    account_id = ids["tryvox-a"]
    batch, expires = str(uuid.uuid4()), int(time.time()) + 600
    ticket = tickets.issue("tryvox", account_id, "hangup", batch, expires)
    b, e, mac = ticket.split(".")
    spoiled = {"other-batch": f"{uuid.uuid4()}.{e}.{mac}", "expired": None, "bad-mac": f"{b}.{e}.{'0' * 32}",
               "other-kind": tickets.issue("tryvox", account_id, "ring", batch, expires)}[spoil]
    if spoiled is None:
        spoiled = tickets.issue("tryvox", account_id, "hangup", batch, int(time.time()) - 1)
    call = str(uuid.uuid4())
    url = f"{stack.api_url}/callbacks/tryvox/{account_id}/hangup/{spoiled}"
    response = httpx.post(url, content=tryvox_hangup(call, "+12125550100"),
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 403 and response.text == "forbidden"
    assert _stored(db, call) == 0


# --- events bound to their account ---------------------------------------------------------------------

def _open_attempt(conn: psycopg.Connection, account_id: int, call_uuid: str) -> int:
    campaign = conn.execute(
        "INSERT INTO campaign (name, account_id, caller_id, state) VALUES ('victim', %s, '+14155550100', "
        "'running') RETURNING id", (account_id,)).fetchone()[0]
    destination = conn.execute(
        "INSERT INTO destination (campaign_id, line_no, number, timezone, status, attempts_made) "
        "VALUES (%s, 2, '+12125550100', 'America/New_York', 'dialing', 1) RETURNING id",
        (campaign,)).fetchone()[0]
    attempt = conn.execute(
        "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, batch_id, "
        "request_uuid, call_uuid, status, lease_expires_at) VALUES (%s, %s, %s, 1, %s, %s, %s, 'sent', "
        "now() + interval '1 hour') RETURNING id",
        (destination, campaign, account_id, uuid.uuid4(), call_uuid, call_uuid)).fetchone()[0]
    conn.commit()
    return int(attempt)


def _attempt_status(conn: psycopg.Connection, attempt: int) -> str:
    return str(conn.execute("SELECT status FROM call_attempt WHERE id = %s", (attempt,)).fetchone()[0])


def test_another_accounts_credentials_can_neither_end_a_call_nor_preempt_its_event(api, database_url) -> None:
    stack, ids = api
    victim, attacker = ids["tryvox-b"], ids["tryvox-a"]
    call = str(uuid.uuid4())
    with psycopg.connect(database_url) as conn:
        attempt = _open_attempt(conn, victim, call)
        body = tryvox_hangup(call, "+12125550100", status="busy")
        forged = httpx.post(signed_url(stack.api_url, "tryvox", attacker, "hangup"), content=body,
                            headers={"Content-Type": "application/json"})
        assert forged.status_code == 200  # authenticated as the attacker's own account, and stored as such
        apply_events(conn, by_provider_ids([call]), 10, NO_SLOTS)
        conn.commit()
        assert _attempt_status(conn, attempt) == "sent"
        genuine = httpx.post(signed_url(stack.api_url, "tryvox", victim, "hangup"),
                             content=tryvox_hangup(call, "+12125550100"),
                             headers={"Content-Type": "application/json"})
        assert genuine.status_code == 200
        stored = conn.execute("SELECT account_id FROM call_event WHERE call_uuid = %s ORDER BY id",
                              (call,)).fetchall()
        assert [r[0] for r in stored] == [attacker, victim]  # the same event key, one row per account

        def ended() -> bool:  # by this apply, or by the API's own applier that may hold the event
            apply_events(conn, by_provider_ids([call]), 10, NO_SLOTS)
            conn.commit()
            row = conn.execute("SELECT status, outcome FROM call_attempt WHERE id = %s",
                               (attempt,)).fetchone()
            return row == ("completed", "answered")

        wait_for(ended, 20, "the genuine event applied to the victim's attempt")


# --- poison values --------------------------------------------------------------------------------------

POISONS = {
    "huge duration": {"duration": "1e30"},
    "64-bit duration": {"duration": 2**40},
    "infinite duration": {"duration": "Infinity"},
    "year one": {"end_time": "0001-01-01T00:00:00Z"},
    "year 9998": {"end_time": "9998-12-31T00:00:00Z"},
    "NUL in id": {"call_uuid": "abc\x00def"},
    "NaN": {"duration": float("nan")},
}


@pytest.mark.parametrize("poison", list(POISONS))
def test_a_poison_value_is_refused_kept_raw_counted_and_fails_no_neighbour(api, db, redis_client,
                                                                            poison: str) -> None:
    stack, ids = api
    account_id, neighbour = ids["tryvox-a"], ids["tryvox-b"]
    call = str(uuid.uuid4())
    payload = {**orjson.loads(tryvox_hangup(call, "+12125550100")), **POISONS[poison]}
    body = json.dumps(payload).encode()  # json, not orjson: it writes NaN as the bare word carriers might
    before = account_stats(redis_client, account_id).get("callbacks_malformed", 0)
    rejected_before = db.execute("SELECT count(*) FROM rejected_callback WHERE account_id = %s",
                                 (account_id,)).fetchone()[0]
    good_call = str(uuid.uuid4())
    with httpx.Client(headers={"Content-Type": "application/json"}) as client:
        bad = client.post(signed_url(stack.api_url, "tryvox", account_id, "hangup"), content=body)
        good = client.post(signed_url(stack.api_url, "tryvox", neighbour, "hangup"),
                           content=tryvox_hangup(good_call, "+12125550101"))
    assert bad.status_code == 400, bad.text
    assert good.status_code == 200
    assert _stored(db, call) == 0 and _stored(db, good_call) == 1
    assert account_stats(redis_client, account_id).get("callbacks_malformed", 0) == before + 1
    rejected = db.execute("SELECT reason FROM rejected_callback WHERE account_id = %s ORDER BY id",
                          (account_id,)).fetchall()
    assert len(rejected) == rejected_before + 1 and rejected[-1][0]


def test_an_integer_beyond_64_bits_in_any_field_is_stored_as_text(api, db) -> None:
    stack, ids = api
    call = str(uuid.uuid4())
    payload = {**orjson.loads(tryvox_hangup(call, "+12125550100")), "carrier_ref": 10**30}
    response = httpx.post(signed_url(stack.api_url, "tryvox", ids["tryvox-a"], "hangup"),
                          content=json.dumps(payload), headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    raw = db.execute("SELECT payload->'raw'->>'carrier_ref' FROM call_event WHERE call_uuid = %s",
                     (call,)).fetchone()
    assert raw == (str(10**30),)


def test_a_poison_event_already_stored_is_set_aside_and_the_applier_moves_on(api, database_url) -> None:
    _, ids = api
    account_id = ids["tryvox-b"]
    with psycopg.connect(database_url) as conn:
        calls = [str(uuid.uuid4()) for _ in range(3)]
        attempts = [_open_attempt(conn, account_id, c) for c in calls]
        for n, call in enumerate(calls):
            duration = 2**40 if n == 1 else 5  # from before the boundary checked it: overflows INTEGER
            parsed = {"outcome": "answered", "duration": duration, "provider_status": "completed"}
            conn.execute(
                "INSERT INTO call_event (provider, account_id, event_key, kind, request_uuid, call_uuid, "
                "destination, payload) VALUES ('tryvox', %s, %s, 'hangup', %s, %s, '+12125550100', %s)",
                (account_id, f"poison-{call}", call, call, orjson.dumps({"parsed": parsed}).decode()))
        conn.commit()

        def set_aside() -> Any:  # by this apply or the API's own applier: the same code either way
            apply_events(conn, by_provider_ids(calls), 10, NO_SLOTS)
            conn.commit()
            return conn.execute("SELECT rejected_reason FROM call_event WHERE call_uuid = %s AND applied_at "
                                "IS NOT NULL", (calls[1],)).fetchone()

        reason = wait_for(set_aside, 20, "the poison event set aside")
        assert "out of range" in reason[0]
        assert [_attempt_status(conn, a) for a in attempts] == ["completed", "sent", "completed"]


# --- size and cost ---------------------------------------------------------------------------------------

def test_an_oversized_body_gets_413_before_parsing_declared_or_streamed(api, db, redis_client) -> None:
    stack, ids = api
    account_id = ids["tryvox-a"]
    before = account_stats(redis_client, account_id).get("callbacks_oversized", 0)
    url = signed_url(stack.api_url, "tryvox", account_id, "hangup")
    big = b'{"pad": "' + b"x" * 70_000 + b'"}'
    assert httpx.post(url, content=big, headers={"Content-Type": "application/json"}).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while streaming
        for _ in range(40):
            yield b"y" * 4096

    assert httpx.post(url, content=chunks(), headers={"Content-Type": "application/json"}).status_code == 413
    assert account_stats(redis_client, account_id).get("callbacks_oversized", 0) == before + 2


def test_an_unknown_account_gets_the_same_403_as_a_bad_signature_and_leaves_no_key(api, redis_client) -> None:
    stack, ids = api
    unknown = [10_000_000 + secrets.randbelow(10_000_000) for _ in range(20)]

    def post(account_id: int) -> httpx.Response:
        return httpx.post(f"{stack.api_url}/callbacks/tryvox/{account_id}/hangup?s=x",
                          content=tryvox_hangup(str(uuid.uuid4()), "+12125550100"))

    # At once, as a forger would send them: each miss waits for the receiver's shared account reload.
    with ThreadPoolExecutor(max_workers=len(unknown)) as pool:
        responses = list(pool.map(post, unknown))
    assert [r.status_code for r in responses] == [403] * len(unknown)
    bodies = {r.text for r in responses}
    bad_signature = httpx.post(f"{stack.api_url}/callbacks/tryvox/{ids['tryvox-a']}/hangup?s=x",
                               content=tryvox_hangup(str(uuid.uuid4()), "+12125550100"))
    assert bodies == {bad_signature.text} == {"forbidden"}
    assert not any(redis_client.exists(redis_keys.account_stats(a)) for a in unknown)
    assert int(redis_client.hget(redis_keys.callback_stats(), "callbacks_forged") or 0) >= len(unknown)


def test_made_up_account_ids_share_one_reload_and_a_new_account_is_found(database_url: str) -> None:
    """The receiver's account cache, on a real pool: 50 concurrent unknown ids cost at most two queries
    (the first load and one shared reload), and an account committed before its callback is found."""
    import asyncio
    from types import SimpleNamespace

    from psycopg_pool import AsyncConnectionPool

    from workers.callbacks.receiver import AccountCache

    class CountingPool:
        def __init__(self, pool: AsyncConnectionPool) -> None:
            self.pool, self.connections = pool, 0

        def connection(self, **kwargs: Any) -> Any:
            self.connections += 1
            return self.pool.connection(**kwargs)

    async def scenario() -> tuple[int, bool]:
        async with AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False) as pool:
            counting = CountingPool(pool)
            request: Any = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(pool=counting)))
            cache = AccountCache()
            unknown = [50_000_000 + n for n in range(50)]
            found = await asyncio.gather(*(cache.get(request, a) for a in unknown))
            assert not any(found)
            queries = counting.connections
            with psycopg.connect(database_url) as conn:
                new = add_account(conn, name=f"late-{uuid.uuid4().hex[:6]}", provider="tryvox", auth_id="x",
                                  auth_token="late-token", cps=1, max_concurrent=1, base_url="http://127.0.0.1:9")
                conn.commit()
            return queries, (await cache.get(request, new)) is not None

    queries, new_found = asyncio.run(scenario())
    assert queries <= 2 and new_found


def test_v2_signed_callbacks_get_the_same_replay_check_and_need_a_ticket(api, db, database_url) -> None:
    from workers.providers.signatures import plivo_v2_signature

    stack, _ = api
    with psycopg.connect(database_url) as conn:
        account_id = add_account(conn, name=f"v2-{uuid.uuid4().hex[:6]}", provider="plivo", auth_id="AV2",
                                 auth_token="v2-token", cps=1, max_concurrent=1, base_url="http://127.0.0.1:9",
                                 options={"accept_v2_signatures": True})
        conn.commit()

    def post(url: str, call: str, nonce: str) -> int:
        form = plivo_form(request_uuid=call, call_uuid=call, to="+12125550123")
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Plivo-Signature-V2-Nonce": nonce,
                   "X-Plivo-Signature-V2": plivo_v2_signature("v2-token", url, nonce)}
        return httpx.post(url, content=urlencode(form), headers=headers).status_code

    url = signed_url(stack.api_url, "plivo", account_id, "hangup")
    nonce = secrets.token_hex(8)
    assert post(url, str(uuid.uuid4()), nonce) == 200
    replayed = str(uuid.uuid4())
    assert post(url, replayed, nonce) == 403  # V2 signs no params: a new body under an old nonce
    legacy = signed_url(stack.api_url, "plivo", account_id, "hangup",
                        secret=callback_url_secret_of(account_id))
    unticketed = str(uuid.uuid4())
    assert post(legacy, unticketed, secrets.token_hex(8)) == 403  # its query (batch) would be unsigned
    assert _stored(db, replayed) == 0 and _stored(db, unticketed) == 0
