"""The message each call will speak, rendered from the campaign's template and the destination's CSV
columns when the attempt is committed, and stored on the attempt (call_attempt.spoken_text), so the answer
callback plays exactly what the results show."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from campaigns.templates import render, template_variables
from workers.callbacks.answer_documents import DEFAULT_MESSAGE
from workers.dial_store import CampaignForDial, StartedAttempt


def speaks_text(campaign: CampaignForDial) -> bool:
    """False when the campaign's own answer URL or an audio URL decides what the call hears."""
    return not campaign.answer_url and not campaign.provider_options.get("audio_url")


def varies_per_destination(options: Mapping[str, Any]) -> bool:
    """Does the message differ by destination (a template with variables)? Then a provider that takes
    the text in the create request (no answer document) must get one request per destination."""
    message = options.get("message")
    return bool(message and template_variables(message))


def store_spoken_text(
    conn: psycopg.Connection, campaign: CampaignForDial, started: Sequence[StartedAttempt]
) -> dict[int, str]:
    """Render the message for each started attempt and store it; returns {attempt id: text}."""
    if not started or not speaks_text(campaign):
        return {}
    template = campaign.provider_options.get("message") or DEFAULT_MESSAGE
    by_destination: dict[int, dict[str, Any]] = {}
    if template_variables(template):
        rows = conn.execute(
            "SELECT id, variables FROM destination WHERE id = ANY(%s)",
            ([a.destination.id for a in started],),
        ).fetchall()
        by_destination = {row[0]: row[1] or {} for row in rows}
    texts = {a.attempt_id: render(template, by_destination.get(a.destination.id, {})).text for a in started}
    conn.execute(
        "UPDATE call_attempt a SET spoken_text = v.text "
        "FROM unnest(%s::bigint[], %s::text[]) AS v(id, text) WHERE a.id = v.id",
        (list(texts), list(texts.values())),
    )
    return texts
