"""Plivo and Vobiz adapters (issue 19): the ring bound under each reading of `hangup_on_ring`, Vobiz's
destination count, both readings of Vobiz V3 signatures, and the campaign options each page offers, in the
fields and forms its page (or, where marked, Plivo's callback-configuration page) gives them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace
from typing import Any

import httpx
import pytest

from workers.providers.account_options import check_account_options
from workers.providers.calls import (
    AccountCredentials,
    CallbackUrls,
    EventKind,
    IncomingCallback,
    OutboundCall,
)
from workers.providers.registry import adapter_for

URLS = CallbackUrls(answer_url="https://cb.test/answer/t1", hangup_url="https://cb.test/hangup/t1",
                    ring_url="https://cb.test/ring/t1")
PLIVO = AccountCredentials(1, "plivo", "MA123", "tok", "https://api.plivo.test")
VOBIZ = AccountCredentials(2, "vobiz", "MA_XXXXXX", "tok", "https://api.vobiz.test")


def body_of(account: AccountCredentials, call: OutboundCall) -> dict[str, Any]:
    with httpx.Client() as client:
        request = adapter_for(account.provider).create_request(client, account, call)
    body: dict[str, Any] = json.loads(request.content)
    return body


def one_call(**fields: Any) -> OutboundCall:
    return OutboundCall(caller_id="+14155550100", destinations=["+12125550100"], callbacks=URLS,
                        ring_timeout=30, time_limit=600, **fields)


def test_vobiz_hangup_on_ring_is_the_ring_timeout_where_the_account_reads_it_as_ringing_only() -> None:
    ring_only = replace(VOBIZ, options={"hangup_on_ring": "ring"})
    body = body_of(ring_only, one_call())
    assert body["hangup_on_ring"] == 30 and body["time_limit"] == 600 and "ring_timeout" not in body


def test_vobiz_hangup_on_ring_read_as_the_whole_call_keeps_the_time_limit_and_is_the_default() -> None:
    body = body_of(VOBIZ, one_call())
    assert body["hangup_on_ring"] == 30 + 600, "an answered call is never cut short of its time limit"
    check_account_options(adapter_for("vobiz").traits, {"hangup_on_ring": "call"})
    check_account_options(adapter_for("vobiz").traits, {"hangup_on_ring": "ring"})
    with pytest.raises(ValueError, match="hangup_on_ring"):
        check_account_options(adapter_for("vobiz").traits, {"hangup_on_ring": "talk"})


def test_vobiz_counts_every_destination_plivo_counts_unique_ones() -> None:
    repeated = [f"+1212555{i % 500:04d}" for i in range(1001)]  # 500 unique, 1001 given
    bulk = OutboundCall(caller_id="+14155550100", destinations=repeated, callbacks=URLS)
    # Plivo Arguments: `to`: 500 unique destinations pass
    assert body_of(PLIVO, bulk)["to"].count("<") == 1000
    with pytest.raises(ValueError, match="1001 destinations"):
        body_of(VOBIZ, bulk)  # Vobiz Required Parameters: `to`: "max 1000" destinations


def vobiz_callback(url: str, signed: str) -> IncomingCallback:
    nonce = "12345"
    digest = hmac.new(b"tok", f"{signed}.{nonce}".encode(), hashlib.sha256).digest()
    headers = {"x-vobiz-signature-v3": base64.b64encode(digest).decode(), "x-vobiz-signature-v3-nonce": nonce}
    return IncomingCallback(method="POST", url=url, headers=headers, body=b"CallUUID=abc", params={},
                            kind_hint=EventKind.HANGUP)


@pytest.mark.parametrize("signed", ["https://cb.test/hangup/t1", "https://cb.test/hangup/t1?b=7"])
def test_vobiz_v3_is_accepted_over_the_url_without_its_query_or_with_it(signed: str) -> None:
    adapter = adapter_for("vobiz")
    url = "https://cb.test/hangup/t1?b=7"
    assert adapter.authenticate(VOBIZ, vobiz_callback(url, signed), None) is not None
    assert adapter.authenticate(VOBIZ, vobiz_callback(url, "https://cb.test/other"), None) is None


def test_plivo_sends_every_option_its_page_offers_in_its_fields() -> None:
    call = one_call(caller_name="Clinic", sip_headers={"Campaign": "42", "Site": "A1"},
                    fallback_url="https://customer.test/fallback", send_digits="1w2W3",
                    machine_detection_time_ms=3000, callback_retries=3)
    body = body_of(PLIVO, call)
    assert body["caller_name"] == "Clinic"  # Arguments: `caller_name`
    assert body["sip_headers"] == "Campaign=42,Site=A1"  # Arguments: `sip_headers`
    assert (body["fallback_url"], body["fallback_method"]) == ("https://customer.test/fallback", "POST")
    # Arguments: `send_digits`, `machine_detection_time`
    assert body["send_digits"] == "1w2W3" and body["machine_detection_time"] == 3000
    for field in ("answer_url", "hangup_url", "ring_url"):  # "Callback-retry configurable" URLs
        url = body[field]
        assert url.endswith("#rc=3&rp=5xx,ct,rt") and "?rc=3#" in url, url
    assert "#" not in body["fallback_url"], "the customer's own URL is sent as given"


def test_vobiz_takes_the_options_on_its_page_and_refuses_sip_headers_and_callback_retries() -> None:
    traits = adapter_for("vobiz").traits.options
    assert traits.supported == {"caller_name", "fallback_url", "send_digits", "machine_detection_time",
                                "audio_url"}
    assert adapter_for("plivo").traits.options.supported >= {"sip_headers", "callback_retries"}
    for traits_of in (adapter_for("plivo").traits.options, traits):
        assert traits_of.machine_detection_modes == {"true", "hangup"}
        assert traits_of.destination_kinds == {"tel", "sip"}
    body = body_of(VOBIZ, one_call(caller_name="Clinic", send_digits="123@1000"))
    assert body["caller_name"] == "Clinic" and body["send_digits"] == "123@1000"
    for refused in ({"sip_headers": {"A": "1"}}, {"callback_retries": 2}):
        with pytest.raises(ValueError, match="does not take"):
            body_of(VOBIZ, one_call(**refused))
