"""The opt-out keypress: the answer document offers it in each provider's digit-gathering markup, and the
keypress callback, authenticated like every callback, puts the number on the account's DNC list and records
it on the attempt. Real `dialer api` process, Postgres and Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from campaigns.accounts import add_account
from tests.engine_harness import Stack, running_stack
from tests.results_helpers import bandwidth_auth, plivo_form, plivo_signed, signed_url
from workers.callbacks.opt_out import with_opt_out
from workers.providers.calls import EventKind, IncomingCallback
from workers.providers.registry import PROVIDERS

pytestmark = pytest.mark.timeout(120)
NUMBER = "+12125550177"


def test_plivo_and_vobiz_gather_the_key_around_the_message_and_the_prompt() -> None:
    for kind in ("plivo", "vobiz"):
        document = '<?xml version="1.0"?><Response><Speak>Your bill is due.</Speak></Response>'
        offered = with_opt_out(
            PROVIDERS[kind],
            document,
            digit="9",
            action_url="https://x.test/k?s=1&b=2",
            credentials=(None, None),
        )
        gather = ElementTree.fromstring(offered).find("GetDigits")
        assert gather is not None and gather.get("action") == "https://x.test/k?s=1&b=2"
        assert (gather.get("numDigits"), gather.get("validDigits")) == ("1", "9")
        assert [s.text for s in gather.findall("Speak")] == [
            "Your bill is due.",
            "To stop receiving these calls, press 9.",
        ]


def test_bandwidth_gathers_with_the_callback_credentials() -> None:
    document = '<?xml version="1.0"?><Response><SpeakSentence>Hello</SpeakSentence></Response>'
    offered = with_opt_out(
        PROVIDERS["bandwidth"],
        document,
        digit="9",
        action_url="https://x.test/k",
        credentials=("user", "pass"),
    )
    gather = ElementTree.fromstring(offered).find("Gather")
    assert gather is not None and gather.get("gatherUrl") == "https://x.test/k"
    assert (gather.get("username"), gather.get("password"), gather.get("maxDigits")) == ("user", "pass", "1")


@pytest.mark.parametrize("kind", ["tryvox", "voipbin"])
def test_providers_that_cannot_gather_digits_keep_their_document(kind: str) -> None:
    assert PROVIDERS[kind].traits.answer.keypress is None
    document = '<?xml version="1.0"?><Response><Speak>Hi</Speak></Response>'
    assert (
        with_opt_out(PROVIDERS[kind], document, digit="9", action_url="u", credentials=(None, None))
        == document
    )


def test_a_keypress_callback_without_digits_is_malformed() -> None:
    dialect = PROVIDERS["plivo"].traits.answer.keypress
    assert dialect is not None
    callback = IncomingCallback(
        method="POST", url="u", headers={}, body=b"", params={"To": "1"}, kind_hint=EventKind.STATUS
    )
    with pytest.raises(ValueError, match="Digits"):
        dialect.parse(callback)


@pytest.fixture(scope="module")
def api(database_url: str, redis_client: Any) -> Iterator[Stack]:
    with running_stack(workers=0, beat=False) as stack:
        yield stack


def _campaign_attempt(
    conn: psycopg.Connection, provider: str, token: str, **options: Any
) -> tuple[int, uuid.UUID, str]:
    account_id = add_account(
        conn,
        name=f"optout-{uuid.uuid4().hex[:8]}",
        provider=provider,
        auth_id="MAOPT",
        auth_token=token,
        cps=10,
        max_concurrent=10,
        base_url="http://127.0.0.1:9",
        options=options or None,
    )
    batch = uuid.uuid4()
    call_id = str(uuid.uuid4())
    campaign = conn.execute(
        "INSERT INTO campaign (name, account_id, caller_id, provider_options, state) "
        "VALUES ('opt-out', %s, '+14155550100', %s, 'running') RETURNING id",
        (account_id, Jsonb({"message": "Your bill is due.", "opt_out_digit": "9"})),
    ).fetchone()[0]
    destination = conn.execute(
        "INSERT INTO destination (campaign_id, line_no, number, timezone, status, attempts_made) "
        "VALUES (%s, 2, %s, 'America/New_York', 'answered', 1) RETURNING id",
        (campaign, NUMBER),
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, batch_id, status, "
        "call_uuid, lease_expires_at) VALUES (%s, %s, %s, 1, %s, 'answered', %s, now() + interval '1 hour')",
        (destination, campaign, account_id, batch, call_id),
    )
    conn.commit()
    return account_id, batch, call_id


def _opted_out(conn: psycopg.Connection, account_id: int) -> tuple[Any, Any]:
    listed = conn.execute(
        "SELECT source FROM account_dnc_number WHERE account_id = %s AND number = %s", (account_id, NUMBER)
    ).fetchone()
    attempt = conn.execute(
        "SELECT opt_out_digits FROM call_attempt WHERE account_id = %s", (account_id,)
    ).fetchone()
    return listed, attempt


def test_plivo_answer_offers_the_opt_out_at_our_keypress_url(api: Stack, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        account_id, batch, call_id = _campaign_attempt(conn, "plivo", "opt-tok")
    url = signed_url(api.api_url, "plivo", account_id, "answer", batch=str(batch))
    form = plivo_form(
        request_uuid=str(uuid.uuid4()), call_uuid=call_id, to=NUMBER, event="StartApp", status="in-progress"
    )
    body, headers = plivo_signed(url, form, "opt-tok")
    answer = httpx.post(url, content=body, headers=headers, timeout=10)
    gather = ElementTree.fromstring(answer.text).find("GetDigits")
    assert gather is not None
    assert gather.get("action") == signed_url(api.api_url, "plivo", account_id, "keypress", batch=str(batch))


def test_a_bandwidth_gather_event_opts_the_number_out_only_with_the_right_key_and_credentials(
    api: Stack, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        account_id, batch, call_id = _campaign_attempt(
            conn, "bandwidth", "bw-tok", application_id="app-1", api_username="bw-user"
        )
        url = signed_url(api.api_url, "bandwidth", account_id, "keypress", batch=str(batch))

        def gather(digits: str, headers: dict[str, str]) -> httpx.Response:
            body = json.dumps(
                {
                    "eventType": "gather",
                    "callId": call_id,
                    "to": NUMBER,
                    "from": "+14155550100",
                    "digits": digits,
                    "terminatingDigit": "",
                    "tag": str(batch),
                }
            ).encode()
            return httpx.post(
                url, content=body, headers={"Content-Type": "application/json", **headers}, timeout=10
            )

        assert gather("9", {}).status_code == 403, "a keypress without the callback credentials is forged"
        assert _opted_out(conn, account_id) == (None, (None,))
        other_key = gather("1", bandwidth_auth(account_id))
        assert other_key.status_code == 200 and _opted_out(conn, account_id) == (None, (None,))
        pressed = gather("9", bandwidth_auth(account_id))
        assert (
            pressed.status_code == 200 and "<SpeakSentence>" in pressed.text and "<Hangup/>" in pressed.text
        )
        assert _opted_out(conn, account_id) == (("keypress",), ("9",))


def test_a_campaign_refuses_an_opt_out_key_that_is_not_one_phone_key(database_url: str) -> None:
    from campaigns import control
    from campaigns.errors import InvalidRequest

    with psycopg.connect(database_url) as conn:
        account_id, _, _ = _campaign_attempt(conn, "plivo", "tok")
        campaign_id = conn.execute("SELECT id FROM campaign WHERE account_id = %s", (account_id,)).fetchone()[
            0
        ]
        for bad in ("99", "x", 9):
            with pytest.raises(InvalidRequest, match="opt_out_digit"):
                control.configure(
                    conn, campaign_id, control.CampaignSettings(provider_options={"opt_out_digit": bad})
                )
            conn.rollback()
        control.configure(
            conn, campaign_id, control.CampaignSettings(provider_options={"opt_out_digit": "#"})
        )
