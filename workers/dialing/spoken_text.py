"""The message each call will speak, rendered from the campaign's template and the destination's CSV
columns when the attempt is committed, and stored on the attempt (call_attempt.spoken_text), so the answer
callback plays exactly what the results show."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from campaigns.store.attempt_marks import record_spoken_text
from campaigns.store.dial_store import CampaignForDial, StartedAttempt
from campaigns.templates import render, template_variables


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
    """Render the campaign's message for each started attempt and store it; returns {attempt id: text}.
    A campaign with no message of its own stores nothing (NULL: the default message), so the hot path of
    such campaigns takes no extra round trip."""
    template = campaign.provider_options.get("message")
    if not started or not template or not speaks_text(campaign):
        return {}
    by_destination: dict[int, dict[str, Any]] = {}
    if template_variables(template):
        rows = conn.execute(
            "SELECT id, variables FROM destination WHERE id = ANY(%s)",
            ([a.destination.id for a in started],),
        ).fetchall()
        by_destination = {row[0]: row[1] or {} for row in rows}
    texts = {a.attempt_id: render(template, by_destination.get(a.destination.id, {})).text for a in started}
    record_spoken_text(conn, texts)
    return texts
