"""A sixth provider is one adapter file plus one registry line: the worked example of docs/DESIGN.md
("Adding a provider"), a made-up Acme Voice, really builds its create request, reads its answer, and
verifies and parses a callback, with nothing but its traits and five methods."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any, ClassVar

import httpx
import pytest

from campaigns.states import Outcome
from workers.providers.account_options import check_account_options
from workers.providers.base import ProviderAdapter
from workers.providers.calls import (
    AccountCredentials,
    CallbackEvent,
    CallbackUrls,
    CallsAccepted,
    EventKind,
    IncomingCallback,
    OutboundCall,
    PlacedCall,
)
from workers.providers.errors import Ambiguous
from workers.providers.fields import json_object
from workers.providers.http import check_destinations, e164, json_answer, make_client
from workers.providers.outcomes import event_key, require
from workers.providers.registry import PROVIDERS
from workers.providers.signatures import callback_url_secret, url_secret_matches
from workers.providers.traits import CallbackRules, ProviderTraits

# --- the example, as docs/DESIGN.md shows it (workers/providers/acme.py) ---
KINDS = {"ringing": EventKind.RING, "answered": EventKind.ANSWER, "ended": EventKind.HANGUP}


class AcmeAdapter(ProviderAdapter):
    """Acme Voice: one call per POST /v2/calls with a Bearer key; callbacks carry our URL secret."""

    traits: ClassVar[ProviderTraits] = ProviderTraits(
        kind="acme", default_base_url="https://api.acme.example", callbacks=CallbackRules(ack_status=204)
    )

    def calls_url(self, account: AccountCredentials) -> str:
        return f"{account.base_url.rstrip('/')}/v2/calls"

    def create_request(
        self, client: httpx.Client, account: AccountCredentials, call: OutboundCall
    ) -> httpx.Request:
        check_destinations(call.destinations, self.traits.limits.max_destinations)
        body = {"from": e164(call.caller_id), "to": e164(call.destinations[0]),
                "answer_url": call.callbacks.answer_url, "status_url": call.callbacks.hangup_url}
        return client.build_request("POST", self.calls_url(account), json=body,
                                    headers={"Authorization": f"Bearer {account.auth_token}"})

    def read_create_answer(
        self, response: httpx.Response, account: AccountCredentials, call: OutboundCall
    ) -> CallsAccepted:
        data = json_answer(response, account)
        call_id = data.get("id") if isinstance(data, dict) else None
        if not call_id:
            raise Ambiguous(f"acme accepted the call but gave no id: {response.text[:200]!r}")
        return CallsAccepted([call_id], [PlacedCall(call.destinations[0], call_id, call_id)])

    def verify_callback(
        self, account: AccountCredentials, callback: IncomingCallback, url_secret: str | None
    ) -> bool:
        return url_secret_matches(account.account_id, url_secret)

    def parse_callback(self, callback: IncomingCallback) -> CallbackEvent:
        payload = json_object(callback.body)
        call_id, status, to = require(payload, "id"), str(payload.get("status") or ""), payload.get("to")
        kind = KINDS.get(status, callback.kind_hint)
        final = kind == EventKind.HANGUP
        answered = Outcome.ANSWERED if payload.get("answered") else Outcome.NO_ANSWER
        return CallbackEvent(provider="acme", kind=kind, event_key=event_key(call_id, to, kind, status),
                             request_uuid=call_id, call_uuid=call_id, destination=to, provider_status=status,
                             is_final=final, outcome=answered if final else None, payload=payload)
# --- end of the example ---

# The registry line, in a copy of the registry's mapping (the real one stays the five providers).
WITH_ACME = MappingProxyType({**PROVIDERS, AcmeAdapter.traits.kind: AcmeAdapter()})
ACCOUNT = AccountCredentials(9, "acme", "acct-9", "acme-key", "https://api.acme.example")
CALL = OutboundCall(caller_id="+14155550100", destinations=["+12125550100"],
                    callbacks=CallbackUrls(answer_url="https://cb.test/answer", hangup_url="https://cb.test/hangup"))


def test_the_sixth_adapter_builds_its_request_and_reads_its_answer() -> None:
    sent: list[httpx.Request] = []

    def carrier(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(201, json={"id": "acme-call-1"})

    with make_client(transport=httpx.MockTransport(carrier)) as client:
        accepted = WITH_ACME["acme"].create_calls(client, ACCOUNT, CALL)
    assert accepted.request_uuids == ["acme-call-1"]
    assert accepted.calls == [PlacedCall("+12125550100", "acme-call-1", "acme-call-1")]
    [request] = sent
    assert request.url == "https://api.acme.example/v2/calls"
    assert request.headers["authorization"] == "Bearer acme-key"
    assert json.loads(request.content) == {"from": "+14155550100", "to": "+12125550100",
                                           "answer_url": "https://cb.test/answer",
                                           "status_url": "https://cb.test/hangup"}


def test_an_answer_without_an_id_is_ambiguous() -> None:
    with make_client(transport=httpx.MockTransport(lambda r: httpx.Response(201, json={}))) as client:
        with pytest.raises(Ambiguous):
            WITH_ACME["acme"].create_calls(client, ACCOUNT, CALL)


def _callback(payload: dict[str, Any]) -> IncomingCallback:
    return IncomingCallback(method="POST", url="https://dialer.test/callbacks/acme/9/hangup", headers={},
                            body=json.dumps(payload).encode(), params={}, kind_hint=EventKind.STATUS)


def test_the_sixth_adapter_verifies_and_parses_its_callbacks() -> None:
    adapter = WITH_ACME["acme"]
    ended = _callback({"id": "acme-call-1", "status": "ended", "to": "+12125550100", "answered": True})
    assert adapter.verify_callback(ACCOUNT, ended, callback_url_secret(9))
    assert adapter.authenticate(ACCOUNT, ended, callback_url_secret(8)) is None
    event = adapter.parse_callback(ended)
    assert (event.kind, event.is_final, event.outcome, event.call_uuid) == (
        EventKind.HANGUP, True, Outcome.ANSWERED, "acme-call-1")
    ringing = adapter.parse_callback(_callback({"id": "acme-call-1", "status": "ringing"}))
    assert (ringing.kind, ringing.is_final, ringing.outcome) == (EventKind.RING, False, None)
    with pytest.raises(ValueError, match="id"):
        adapter.parse_callback(_callback({"status": "ended"}))


def test_the_sixth_provider_gets_every_default_it_did_not_declare() -> None:
    traits = WITH_ACME["acme"].traits
    assert traits.limits.max_destinations == 1 and traits.answer.document_kind == "xml"
    with make_client() as client:  # no status API: nothing is asked
        assert not traits.api.has_call_status
        assert WITH_ACME["acme"].fetch_call_status(client, ACCOUNT, "r", "c") is None
    assert traits.callbacks.ack_status == 204 and traits.callbacks.nonce_headers == ()
    check_account_options(traits, {})  # no option required
    with pytest.raises(ValueError, match="callback times are local"):
        check_account_options(traits, {"time_zone": "UTC"})
    assert set(PROVIDERS) == {"plivo", "vobiz", "tryvox", "voipbin", "bandwidth"}, "the registry is untouched"
