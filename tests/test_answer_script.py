"""An answered call plays its campaign's script: a redirect to the campaign's own answer URL, or its message,
in the provider's call-control XML. Real `dialer api` process."""

from __future__ import annotations

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
from tests.results_helpers import plivo_form, plivo_signed, signed_url
from workers.callbacks.answer_documents import answer_document

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("provider", "verb"),
    [("plivo", "Speak"), ("vobiz", "Speak"), ("tryvox", "Speak"), ("bandwidth", "SpeakSentence")],
)
def test_answer_document_speaks_the_message_in_each_providers_xml(provider: str, verb: str) -> None:
    media_type, body = answer_document(provider, message="Hi <there> & bye", redirect_url=None)
    assert media_type == "application/xml"
    assert f"<{verb}>Hi &lt;there&gt; &amp; bye</{verb}>" in body


@pytest.mark.parametrize(
    ("provider", "element"),
    [
        ("plivo", "<Redirect>https://example.test/ivr?a=1&amp;b=2</Redirect>"),
        ("vobiz", "<Redirect>https://example.test/ivr?a=1&amp;b=2</Redirect>"),
        ("tryvox", "<Redirect>https://example.test/ivr?a=1&amp;b=2</Redirect>"),
        # BXML: <Redirect redirectUrl="…"/>, the URL an attribute.
        ("bandwidth", '<Redirect redirectUrl="https://example.test/ivr?a=1&amp;b=2"/>'),
    ],
)
def test_answer_document_redirects_to_the_campaigns_own_answer_url(provider: str, element: str) -> None:
    _, body = answer_document(provider, message="ignored", redirect_url="https://example.test/ivr?a=1&b=2")
    assert element in body
    ElementTree.fromstring(body.split("?>", 1)[1])  # well-formed


@pytest.fixture(scope="module")
def api(database_url: str, redis_client: Any) -> Iterator[Stack]:
    with running_stack(workers=0, beat=False) as stack:
        yield stack


def _attempt_with_script(
    conn: psycopg.Connection, account_id: int, answer_url: str | None, message: str | None
) -> uuid.UUID:
    batch = uuid.uuid4()
    campaign = conn.execute(
        "INSERT INTO campaign (name, account_id, caller_id, answer_url, provider_options, state) "
        "VALUES ('script', %s, '+14155550100', %s, %s, 'running') RETURNING id",
        (account_id, answer_url, Jsonb({"message": message} if message else {})),
    ).fetchone()[0]
    destination = conn.execute(
        "INSERT INTO destination (campaign_id, line_no, number, timezone, status, attempts_made) "
        "VALUES (%s, 2, '+12125550199', 'America/New_York', 'dialing', 1) RETURNING id",
        (campaign,),
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, batch_id, status, "
        "lease_expires_at) VALUES (%s, %s, %s, 1, %s, 'sent', now() + interval '1 hour')",
        (destination, campaign, account_id, batch),
    )
    conn.commit()
    return batch


@pytest.mark.parametrize(
    ("answer_url", "message", "expected"),
    [
        ("https://customer.example/ivr", None, "<Redirect>https://customer.example/ivr</Redirect>"),
        (
            None,
            "Your appointment is tomorrow at nine.",
            "<Speak>Your appointment is tomorrow at nine.</Speak>",
        ),
    ],
)
def test_answer_callback_plays_the_campaigns_script(
    api: Stack, database_url: str, answer_url: str | None, message: str | None, expected: str
) -> None:
    with psycopg.connect(database_url) as conn:
        account_id = add_account(
            conn,
            name=f"script-{uuid.uuid4().hex[:8]}",
            provider="plivo",
            auth_id="MASCRIPT",
            auth_token="script-tok",
            cps=10,
            max_concurrent=10,
            base_url="http://127.0.0.1:9",
        )
        conn.commit()
        batch = _attempt_with_script(conn, account_id, answer_url, message)
    url = signed_url(api.api_url, "plivo", account_id, "answer", batch=str(batch))
    form = plivo_form(
        request_uuid=str(uuid.uuid4()),
        call_uuid=str(uuid.uuid4()),
        to="+12125550199",
        event="StartApp",
        status="in-progress",
    )
    body, headers = plivo_signed(url, form, "script-tok")
    response = httpx.post(url, content=body, headers=headers, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert expected in response.text
