"""The provider request for one group of destinations, built from the campaign's options (pure)."""

from __future__ import annotations

import uuid

from campaigns.call_options import machine_detection_mode, ring_timeout, time_limit
from workers.callback_urls import callback_urls_for
from workers.dial_store import CampaignForDial
from workers.providers.base import AccountCredentials, OutboundCall


def outbound_call(
    campaign: CampaignForDial, creds: AccountCredentials, batch_id: uuid.UUID, numbers: list[str]
) -> OutboundCall:
    """One request's body: the caller id, numbers, callback URLs tagged with the batch, and call options."""
    options = campaign.provider_options
    machine = machine_detection_mode(options)
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
        machine_detection=machine,
        tag=str(batch_id),
        message=options.get("message"),  # providers that take the script at creation (VoIPbin)
        script_url=campaign.answer_url,
        extra=options.get("extra", {}),
    )
