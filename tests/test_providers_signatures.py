"""Callback authenticity: PROVIDERS.md's worked vectors, each provider's verify_callback, forged callbacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import urlencode

import pytest

from workers.providers.calls import AccountCredentials, EventKind, IncomingCallback
from workers.providers.registry import adapter_for
from workers.providers.signatures import (
    any_signature_matches,
    bandwidth_callback_credentials,
    basic_auth_header,
    callback_url_secret,
    plivo_v2_signature,
    plivo_v3_signature,
    plivo_v3_string,
    vobiz_v3_signature,
    voipbin_signature,
)

TOKEN = "my_auth_token"
PLIVO = AccountCredentials(1, "plivo", "MA1", TOKEN, "https://api.plivo.test")
VOBIZ = AccountCredentials(2, "vobiz", "MA2", TOKEN, "https://api.vobiz.test")
TRYVOX = AccountCredentials(3, "tryvox", "acc3", "key", "https://api.tryvox.test")
VOIPBIN = AccountCredentials(4, "voipbin", "c4", "jwt", "https://api.voipbin.test")
VOIPBIN_SIGNED = AccountCredentials(4, "voipbin", "c4", "jwt", "https://api.voipbin.test",
                                    webhook_secret="whsec")
BANDWIDTH = AccountCredentials(5, "bandwidth", "99", "pw", "https://voice.bandwidth.test")
URL = "https://dialer.test/callbacks/plivo/1/hangup?s=abc&b=batch-1"
FORM = {"CallUUID": "abc", "Duration": "5", "Event": "Hangup"}


def incoming(method: str = "POST", url: str = URL, headers: dict[str, str] | None = None,
             body: bytes = b"", params: dict[str, str] | None = None) -> IncomingCallback:
    """An IncomingCallback as the callback API would hand it over."""
    return IncomingCallback(method=method, url=url, headers=headers or {}, body=body, params=params or {},
                            kind_hint=EventKind.HANGUP)


def test_plivo_v3_worked_vector() -> None:
    params = {"CallUUID": "abc", "Duration": "5"}
    assert plivo_v3_string("POST", "https://x.com/hangup", params) == "https://x.com/hangup?CallUUIDabcDuration5"
    assert plivo_v3_signature(TOKEN, "POST", "https://x.com/hangup", "12345", params) == \
        "HzUMfXj/9bDOWw0fiPVmcFE9LcjST0IAxzT/S8rGK8o="


def test_plivo_v2_worked_vector() -> None:
    expected = "ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc="
    assert plivo_v2_signature(TOKEN, "https://answer.url", "12345") == expected


@pytest.mark.parametrize(("method", "url", "params", "expected"), [
    ("POST", "https://x.com/h?b=2&a=1#ct=2000", {"Z": "1", "A": "2"}, "https://x.com/h?a=1&b=2.A2Z1"),
    ("POST", "https://x.com/h?b=2&a=1", {}, "https://x.com/h?a=1&b=2"),
    ("POST", "https://x.com/h", {}, "https://x.com/h"),
    ("POST", "https://x.com/h", {"K": ["b", "a"]}, "https://x.com/h?KaKb"),
    ("GET", "https://x.com/h?b=2", {"a": "1"}, "https://x.com/h?a=1&b=2"),
    ("GET", "https://x.com/h?k=2&k=1", {}, "https://x.com/h?k=1&k=2"),
    ("GET", "https://x.com/h", {}, "https://x.com/h"),
])
def test_plivo_v3_string_rules(method: str, url: str, params: dict, expected: str) -> None:
    assert plivo_v3_string(method, url, params) == expected


def test_any_of_several_comma_separated_signatures_may_match() -> None:
    assert any_signature_matches("wrong, right", "right")
    assert not any_signature_matches("wrong,also-wrong", "right")
    assert not any_signature_matches(None, "right") and not any_signature_matches("", "")


def plivo_signed(method: str = "POST", header: str = "x-plivo-signature-v3") -> IncomingCallback:
    """A Plivo hangup callback signed as Plivo signs it."""
    body = urlencode(FORM).encode() if method == "POST" else b""
    url = URL if method == "POST" else f"{URL}&{urlencode(FORM)}"
    params = FORM if method == "POST" else {"s": "abc", "b": "batch-1", **FORM}
    signature = plivo_v3_signature(TOKEN, method, url, "n1", FORM if method == "POST" else params)
    headers = {header: f"other,{signature}", "x-plivo-signature-v3-nonce": "n1"}
    return incoming(method, url, headers, body, params)


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("header", ["x-plivo-signature-v3", "x-plivo-signature-ma-v3"])
def test_plivo_accepts_a_correctly_signed_callback(method: str, header: str) -> None:
    assert adapter_for("plivo").verify_callback(PLIVO, plivo_signed(method, header), None)


def test_plivo_rejects_tampered_unsigned_and_wrong_token_callbacks() -> None:
    adapter = adapter_for("plivo")
    good = plivo_signed()
    tampered = incoming(body=good.body.replace(b"Duration=5", b"Duration=500"), headers=dict(good.headers))
    assert not adapter.verify_callback(PLIVO, tampered, None)
    assert not adapter.verify_callback(PLIVO, incoming(body=good.body, params=FORM), None)
    other = AccountCredentials(1, "plivo", "MA1", "another-token", "https://api.plivo.test")
    assert not adapter.verify_callback(other, good, None)
    moved = incoming(url=URL.replace("hangup", "answer"), body=good.body, headers=dict(good.headers))
    assert not adapter.verify_callback(PLIVO, moved, None)


def test_plivo_v2_only_when_the_account_allows_it() -> None:
    headers = {"x-plivo-signature-v2": plivo_v2_signature(TOKEN, URL, "n2"),
               "x-plivo-signature-v2-nonce": "n2"}
    allowed = AccountCredentials(1, "plivo", "MA1", TOKEN, "x", options={"accept_v2_signatures": True})
    assert not adapter_for("plivo").verify_callback(PLIVO, incoming(headers=headers), None)
    assert adapter_for("plivo").verify_callback(allowed, incoming(headers=headers), None)


def test_vobiz_v3_signs_the_url_without_query_and_not_the_params() -> None:
    signature = vobiz_v3_signature(TOKEN, URL, "n3")
    signed = b"https://dialer.test/callbacks/plivo/1/hangup.n3"
    digest = hmac.new(TOKEN.encode(), signed, hashlib.sha256).digest()
    assert signature == base64.b64encode(digest).decode()
    headers = {"x-vobiz-signature-v3": signature, "x-vobiz-signature-v3-nonce": "n3"}
    adapter = adapter_for("vobiz")
    assert adapter.verify_callback(VOBIZ, incoming(headers=headers, body=b"CallUUID=abc"), None)
    assert adapter.verify_callback(VOBIZ, incoming(url=URL.split("?")[0] + "?s=zzz", headers=headers), None)
    moved = incoming(url=URL.replace("hangup", "ring"), headers=headers)
    assert not adapter.verify_callback(VOBIZ, moved, None)
    plivo_style = {"x-plivo-signature-v3": signature, "x-plivo-signature-v3-nonce": "n3"}
    assert not adapter.verify_callback(VOBIZ, incoming(headers=plivo_style), None)


def test_voipbin_with_a_webhook_secret_checks_the_body_hmac() -> None:
    body = json.dumps({"type": "call_hangup", "data": {"id": "c1"}}).encode()
    adapter = adapter_for("voipbin")
    signed = incoming(body=body, headers={"x-voipbin-signature": voipbin_signature("whsec", body)})
    assert adapter.verify_callback(VOIPBIN_SIGNED, signed, None)
    forged = incoming(body=body + b" ", headers=dict(signed.headers))
    assert not adapter.verify_callback(VOIPBIN_SIGNED, forged, callback_url_secret(4))
    assert not adapter.verify_callback(VOIPBIN_SIGNED, incoming(body=body), callback_url_secret(4))


def test_voipbin_without_a_webhook_secret_checks_the_url_secret() -> None:
    adapter = adapter_for("voipbin")
    assert adapter.verify_callback(VOIPBIN, incoming(), callback_url_secret(4))
    assert not adapter.verify_callback(VOIPBIN, incoming(), callback_url_secret(3))
    assert not adapter.verify_callback(VOIPBIN, incoming(), None)


def test_tryvox_checks_the_url_secret_of_its_own_account() -> None:
    adapter = adapter_for("tryvox")
    assert adapter.verify_callback(TRYVOX, incoming(), callback_url_secret(3))
    assert not adapter.verify_callback(TRYVOX, incoming(), callback_url_secret(4))
    assert not adapter.verify_callback(TRYVOX, incoming(), "")
    assert not adapter.verify_callback(TRYVOX, incoming(), None)


def test_bandwidth_checks_the_basic_credentials_we_gave_the_call() -> None:
    username, password = bandwidth_callback_credentials(5)
    # A key of its own: the password shows in Bandwidth's console, the URL secret in every carrier's logs.
    assert username == "dialer" and len(password) == 32 and password != callback_url_secret(5)
    adapter = adapter_for("bandwidth")
    good = incoming(headers={"authorization": basic_auth_header(username, password)})
    assert adapter.verify_callback(BANDWIDTH, good, None)
    other = incoming(headers={"authorization": basic_auth_header(*bandwidth_callback_credentials(6))})
    assert not adapter.verify_callback(BANDWIDTH, other, None)
    assert not adapter.verify_callback(BANDWIDTH, incoming(), None)


def test_callback_url_secret_is_stable_per_account_and_distinct_across_accounts() -> None:
    assert callback_url_secret(7) == callback_url_secret(7)
    assert callback_url_secret(7) != callback_url_secret(8)
    assert len(callback_url_secret(7)) == 32 and int(callback_url_secret(7), 16) >= 0
