"""What an answered call hears: the campaign's own answer URL (redirected to), an audio URL, or the message
rendered for that destination when it was dialed (call_attempt.spoken_text), with the campaign's voice and
language. Looked up once per batch (a bulk request's calls share one) and kept for a while; the answer
event's destination picks the call's own text within a bulk."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from campaigns.store.event_store import CONNECTION_WAIT_S
from campaigns.templates import render

log = logging.getLogger(__name__)

BATCH_SCRIPT_SQL = """
SELECT c.answer_url, c.provider_options, d.number, a.spoken_text
FROM call_attempt a JOIN campaign c ON c.id = a.campaign_id JOIN destination d ON d.id = a.destination_id
WHERE a.batch_id = %s AND a.account_id = %s"""


def _digits(number: str | None) -> str:
    return "".join(ch for ch in number or "" if ch.isdigit())


@dataclass(frozen=True)
class CallScript:
    """One batch's script: the campaign's options and each destination's rendered text."""

    answer_url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, str | None] = field(default_factory=dict)  # digits of the number -> its text

    def text_for(self, destination: str | None) -> str | None:
        """The text rendered for this call (a batch of one needs no destination to find it). A call with
        none stored (dialed before templates) hears the template with its variables left out, never
        `{first_name}`."""
        if len(self.texts) == 1:
            text = next(iter(self.texts.values()))
        else:
            text = self.texts.get(_digits(destination))
        if text is not None:
            return text
        template = self.options.get("message")
        return render(template, {}).text if template else None


NO_SCRIPT = CallScript()


class CallScripts:
    """Per-batch cache of CallScript, bounded in size."""

    def __init__(self, size: int = 20000) -> None:
        self.size = size
        self.entries: dict[tuple[int, uuid.UUID], CallScript] = {}

    async def get(self, request: Request, account_id: int, batch_id: uuid.UUID | None) -> CallScript:
        """The batch's script, looked up only among the calls of the account that authenticated the event."""
        if batch_id is None:
            return NO_SCRIPT
        hit = self.entries.get((account_id, batch_id))
        if hit is not None:
            return hit
        try:
            async with request.app.state.pool.connection(timeout=CONNECTION_WAIT_S) as conn:
                cur = await conn.execute(BATCH_SCRIPT_SQL, (batch_id, account_id))
                rows = await cur.fetchall()
        except Exception:  # the event is stored; play the default message rather than fail the call
            log.warning("could not look up the script of batch %s", batch_id)
            return NO_SCRIPT
        if not rows:
            return NO_SCRIPT
        script = CallScript(rows[0][0], dict(rows[0][1] or {}), {_digits(r[2]): r[3] for r in rows})
        if len(self.entries) >= self.size:
            self.entries.clear()
        self.entries[(account_id, batch_id)] = script
        return script
