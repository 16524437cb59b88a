"""Every answer and transport failure in docs/DESIGN.md's error table maps to our errors, per provider."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from tests.test_providers_requests import ACCOUNTS, Recorder, call_to, client_with
from workers.providers.errors import (
    Ambiguous,
    AuthFailed,
    PaymentRequired,
    ProviderError,
    Rejected,
    Throttled,
    Transient,
)
from workers.providers.http import TIMEOUT, make_client, parse_retry_after, send
from workers.providers.registry import PROVIDERS, adapter_for

STATUS_ERRORS: list[tuple[int, type[ProviderError]]] = [
    (400, Rejected), (401, AuthFailed), (402, PaymentRequired), (403, AuthFailed), (404, AuthFailed),
    (422, Rejected), (429, Throttled), (500, Ambiguous), (502, Ambiguous), (503, Ambiguous), (504, Ambiguous),
]
NOT_SENT = [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout]
AFTER_SENDING = [httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError]


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set(cls.__subclasses__())
    for sub in list(found):
        found |= _all_subclasses(sub)
    return found


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize(("status", "error"), STATUS_ERRORS)
def test_every_error_status_is_mapped_for_every_provider(provider: str, status: int,
                                                         error: type[ProviderError]) -> None:
    client, recorder = client_with(status, {"error": "the carrier says no"})
    with pytest.raises(error) as caught:
        adapter_for(provider).create_calls(client, ACCOUNTS[provider], call_to("+14155550001"))
    assert type(caught.value) is error
    assert caught.value.status == status
    assert len(recorder.requests) == 1, "a create POST is never retried inside the adapter"


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize(("failure", "error"), [(e, Transient) for e in NOT_SENT]
                         + [(e, Ambiguous) for e in AFTER_SENDING])
def test_transport_failures_before_and_after_sending_are_mapped(provider: str, failure: type[Exception],
                                                                error: type[ProviderError]) -> None:
    calls: list[httpx.Request] = []

    def fail(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise failure("boom", request=request)  # type: ignore[call-arg]

    client = make_client(transport=httpx.MockTransport(fail))
    with pytest.raises(error):
        adapter_for(provider).create_calls(client, ACCOUNTS[provider], call_to("+14155550001"))
    assert len(calls) == 1


@pytest.mark.parametrize("failure", sorted(_all_subclasses(httpx.TransportError), key=repr))
def test_no_httpx_transport_error_escapes_unmapped(failure: type[Exception]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise failure("boom", request=request)  # type: ignore[call-arg]

    client = make_client(transport=httpx.MockTransport(fail))
    request = client.build_request("POST", "https://api.test/calls")
    with pytest.raises(ProviderError):
        send(client, request, ACCOUNTS["plivo"])


def test_status_get_read_timeout_is_transient_not_ambiguous() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    client = make_client(transport=httpx.MockTransport(fail))
    with pytest.raises(Transient):
        adapter_for("plivo").fetch_call_status(client, ACCOUNTS["plivo"], None, "call-1")


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_a_503_with_retry_after_says_nothing_was_placed_and_may_be_retried(provider: str) -> None:
    client, _ = client_with(503, {"error": "rate limited"}, headers={"Retry-After": "2"})
    with pytest.raises(Transient) as caught:
        adapter_for(provider).create_calls(client, ACCOUNTS[provider], call_to("+14155550001"))
    assert caught.value.retry_after == 2.0 and caught.value.status == 503


def test_a_5xx_on_a_status_get_is_transient_there_is_nothing_to_place() -> None:
    client, _ = client_with(502, {"error": "bad gateway"})
    with pytest.raises(Transient):
        adapter_for("plivo").fetch_call_status(client, ACCOUNTS["plivo"], None, "call-1")


def test_throttled_carries_retry_after_seconds() -> None:
    body = {"type": "error", "description": "Account call creation rate limit exceeded"}
    client, _ = client_with(429, body, headers={"Retry-After": "3"})
    with pytest.raises(Throttled) as caught:
        adapter_for("bandwidth").create_calls(client, ACCOUNTS["bandwidth"], call_to("+14155550001"))
    assert caught.value.retry_after == 3.0
    assert "rate limit exceeded" in caught.value.message


def test_throttled_without_retry_after_has_none() -> None:
    client, _ = client_with(429, {"error": "too many"})
    with pytest.raises(Throttled) as caught:
        adapter_for("plivo").create_calls(client, ACCOUNTS["plivo"], call_to("+14155550001"))
    assert caught.value.retry_after is None


@pytest.mark.parametrize(("value", "expected"), [
    ("5", 5.0), ("0.5", 0.5), ("-3", 0.0), ("Wed, 01 May 2024 10:00:30 GMT", 30.0),
    ("Wed, 01 May 2024 09:59:00 GMT", 0.0), ("soon", None), ("", None), (None, None),
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)) == expected


def test_auth_failure_message_names_provider_and_account_without_the_token() -> None:
    client, _ = client_with(401, {"error": "invalid credentials"})
    with pytest.raises(AuthFailed) as caught:
        adapter_for("vobiz").create_calls(client, ACCOUNTS["vobiz"], call_to("+14155550001"))
    message = caught.value.message
    assert "vobiz" in message and "account 2" in message and "MA456" in message
    assert "invalid credentials" in message and "tok" not in message.replace("token", "")


def test_rejected_carries_the_providers_message() -> None:
    client, _ = client_with(400, {"api_id": "x", "error": "invalid 'to' number"})
    with pytest.raises(Rejected, match="invalid 'to' number"):
        adapter_for("plivo").create_calls(client, ACCOUNTS["plivo"], call_to("+14155550001"))


def test_plain_text_error_body_is_used_as_the_message() -> None:
    recorder = Recorder(lambda request: httpx.Response(400, text="bad destination"))
    client = make_client(transport=httpx.MockTransport(recorder))
    with pytest.raises(Rejected, match="bad destination"):
        adapter_for("tryvox").create_calls(client, ACCOUNTS["tryvox"], call_to("+14155550001"))


def test_make_client_timeouts_and_no_redirects() -> None:
    client = make_client()
    assert client.timeout == TIMEOUT
    assert (TIMEOUT.connect, TIMEOUT.read, TIMEOUT.write, TIMEOUT.pool) == (3.0, 10.0, 5.0, 5.0)
    assert client.follow_redirects is False
    client.close()
