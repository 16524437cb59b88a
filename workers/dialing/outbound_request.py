"""The provider request for one group of destinations, built from the campaign's options (pure)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from campaigns.call_options import dial_lease_s, machine_detection_mode, ring_timeout, time_limit
from campaigns.store.dial_store import CampaignForDial
from campaigns.templates import render
from workers.callbacks.urls import callback_urls_for
from workers.providers.calls import AccountCredentials, OutboundCall
from workers.providers.registry import adapter_for


def outbound_call(
    campaign: CampaignForDial,
    creds: AccountCredentials,
    batch_id: uuid.UUID,
    numbers: list[str],
    spoken: Mapping[int, str] | None = None,
) -> OutboundCall:
    """One request's body: the caller id, numbers, callback URLs tagged with the batch, and call options.
    `spoken` (attempt id -> rendered text) is the message of providers that take it at creation rather than
    in an answer document (a request's calls share it: workers.dialing.chunk sends one per request there)."""
    options = campaign.provider_options
    machine = machine_detection_mode(options)
    extra = dict(options.get("extra", {}))
    if options.get("language") and adapter_for(creds.provider).traits.answer.document_kind == "none":
        extra.setdefault("talk_language", options["language"])  # where the text goes in at creation
    return OutboundCall(
        caller_id=campaign.caller_id,
        destinations=numbers,
        callbacks=callback_urls_for(
            creds.provider,
            creds.account_id,
            str(batch_id),
            track_ringing=bool(options.get("track_ringing", True)),
            machine_detection=bool(machine),
            call_life_s=dial_lease_s(options),
        ),
        ring_timeout=ring_timeout(options),
        time_limit=time_limit(options),
        machine_detection=machine,
        tag=str(batch_id),
        message=_one_text(spoken, options.get("message")),  # providers that take the script at creation
        script_url=campaign.answer_url,
        audio_url=options.get("audio_url"),
        caller_name=options.get("caller_name"),
        sip_headers=dict(options.get("sip_headers") or {}),
        fallback_url=options.get("fallback_url"),
        send_digits=options.get("send_digits"),
        machine_detection_time_ms=options.get("machine_detection_time"),
        callback_retries=options.get("callback_retries"),
        extra=extra,
    )


def _one_text(spoken: Mapping[int, str] | None, template: str | None) -> str | None:
    """The text a request's calls share: the rendered one, else the template with its variables left out
    (never `{first_name}`)."""
    texts = set((spoken or {}).values())
    if len(texts) == 1:
        return texts.pop()
    return render(template, {}).text if template else None
