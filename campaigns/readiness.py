"""Whether a campaign has what dialing needs, checked before `campaign start` and before every new run."""

from __future__ import annotations

from typing import Any

import psycopg

from campaigns.accounts import provider_takes_answer_url
from campaigns.errors import InvalidRequest
from campaigns.provider_options import unsupported_option


def require_ready_to_dial(conn: psycopg.Connection, row: dict[str, Any]) -> None:
    """A campaign row has what dialing needs (an account, a caller id, a script its provider can use), or
    InvalidRequest says how."""
    campaign_id = row["id"]
    if row["account_id"] is None:
        raise InvalidRequest(
            f"campaign {campaign_id} has no provider account: "
            f"`dialer campaign set {campaign_id} --account NAME`"
        )
    if not row["caller_id"]:
        raise InvalidRequest(
            f"campaign {campaign_id} has no caller id: `dialer campaign set {campaign_id} --caller-id +1…`"
        )
    provider = conn.execute(
        "SELECT provider FROM provider_account WHERE id = %s", (row["account_id"],)
    ).fetchone()
    if provider and row["answer_url"] and not provider_takes_answer_url(provider[0]):
        # VoIPbin takes a call's actions at creation; its API names no way to fetch them from a URL.
        raise InvalidRequest(
            f"campaign {campaign_id} has an answer URL, which a {provider[0]} account cannot use: give it a "
            f"message instead (`dialer campaign set {campaign_id} --message …`)"
        )
    if provider:
        refusal = unsupported_option(provider[0], row.get("provider_options") or {})
        if refusal is not None:
            raise InvalidRequest(
                f"campaign {campaign_id}: {refusal.field}: {refusal.message} "
                f"(`dialer campaign set {campaign_id}` can change it)"
            )
