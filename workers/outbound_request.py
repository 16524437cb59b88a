"""The provider request for one group of destinations, built from the campaign's options (pure)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from campaigns.call_options import ring_timeout, time_limit
from workers.callback_urls import callback_urls_for
from workers.dial_store import CampaignForDial
from workers.providers.base import AccountCredentials, OutboundCall
from workers.providers.registry import adapter_for


def outbound_call(
    campaign: CampaignForDial,
    creds: AccountCredentials,
    batch_id: uuid.UUID,
    numbers: list[str],
    spoken: Mapping[int, str] | None = None,
) -> OutboundCall:
    """One request's body: the caller id, numbers, callback URLs tagged with the batch, and call options.
    `spoken` (attempt id -> rendered text) goes in as `talk_text` when the request's calls all say the
    same thing, for providers that take the text at creation rather than in an answer document."""
    options = campaign.provider_options
    machine = options.get("machine_detection")
    extra = dict(options.get("extra", {}))
    texts = set((spoken or {}).values())
    if len(texts) == 1 and adapter_for(creds.provider).answer_document_kind == "none":
        extra.setdefault("talk_text", texts.pop())
        if options.get("language"):
            extra.setdefault("talk_language", options["language"])
    return OutboundCall(
        caller_id=campaign.caller_id,
        destinations=numbers,
        callbacks=callback_urls_for(
            creds.provider,
            creds.account_id,
            str(batch_id),
            track_ringing=bool(options.get("track_ringing", True)),
            machine_detection=bool(machine),
        ),
        ring_timeout=ring_timeout(options),
        time_limit=time_limit(options),
        machine_detection=str(machine).lower() if machine else None,
        tag=str(batch_id),
        extra=extra,
    )
