"""Whether a campaign has what dialing needs, checked before `campaign start` and before every new run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from campaigns.accounts import provider_takes_answer_url
from campaigns.campaign_accounts import campaign_fallbacks
from campaigns.destination_kinds import KIND_SQL, cannot_dial, destination_kind, destination_kinds
from campaigns.errors import InvalidRequest
from campaigns.provider_options import unsupported_option
from campaigns.retirement import require_not_archived
from campaigns.states import FINAL_DESTINATION, RUN_RESETTABLE, sql_in

# Destinations no run dials again (invalid, dnc, cancelled: a new run resets none of them) are not counted.
_NEVER_DIALED_AGAIN = FINAL_DESTINATION - RUN_RESETTABLE
UNDIALABLE_SQL = f"""
SELECT count(*) OVER (), line_no, number FROM destination
WHERE campaign_id = %(campaign_id)s AND {KIND_SQL} <> ALL(%(kinds)s)
  AND NOT {sql_in("status", _NEVER_DIALED_AGAIN)}
ORDER BY line_no LIMIT 1
"""


@dataclass(frozen=True)
class Undialable:
    """How many of a campaign's destinations its provider cannot dial, and the first of them."""

    count: int
    line_no: int
    number: str
    reason: str  # e.g. "tryvox dials only E.164 numbers, not SIP URIs"

    def describe(self, campaign_id: int, provider: str) -> str:
        some = "a destination" if self.count == 1 else f"{self.count:,} destinations"
        return (f"campaign {campaign_id} holds {some} {provider} cannot dial ({self.reason}), "
                f"e.g. line {self.line_no}: {self.number}")


def undialable_destinations(conn: psycopg.Connection, campaign_id: int, provider: str) -> Undialable | None:
    """The campaign's destinations that may still be dialed and that `provider` cannot dial (a SIP URI for a
    provider of E.164 numbers only), or None when there are none or the provider's kinds are not known."""
    kinds = destination_kinds(provider)
    if kinds is None:
        return None
    found = conn.execute(UNDIALABLE_SQL, {"campaign_id": campaign_id, "kinds": sorted(kinds)}).fetchone()
    if found is None:
        return None
    count, line_no, number = found
    reason = cannot_dial(provider, kinds, destination_kind(number)) or ""
    return Undialable(int(count), int(line_no), str(number), reason)


def require_ready_to_dial(conn: psycopg.Connection, row: dict[str, Any]) -> None:
    """A campaign row has what dialing needs (an account, a caller id, a script its provider can use, and
    only destinations its provider can dial), or InvalidRequest says how. Its fallbacks each need the same
    of their own provider, and the error names the fallback."""
    campaign_id = row["id"]
    require_not_archived(row)
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
    if provider:
        _require_account_suits(conn, row, provider[0], f"campaign {campaign_id}")
    for position, fallback in enumerate(campaign_fallbacks(conn, campaign_id), start=1):
        found = conn.execute("SELECT name, provider FROM provider_account WHERE id = %s",
                             (fallback.account_id,)).fetchone()
        if found is None:
            continue
        name, kind = found
        # A fallback without its own caller id dials with the campaign's, required above.
        _require_account_suits(conn, row, kind, f"campaign {campaign_id}'s fallback {position}, account "
                               f"{name!r} ({kind})", fallback=name)


def _require_account_suits(conn: psycopg.Connection, row: dict[str, Any], provider: str, who: str,
                           fallback: str | None = None) -> None:
    """`provider` (the primary's, or a fallback's: `who` names it) can use the campaign's script and options
    and dial its destinations."""
    campaign_id = row["id"]
    if row["answer_url"] and not provider_takes_answer_url(provider):
        # VoIPbin takes a call's actions at creation; its API names no way to fetch them from a URL.
        raise InvalidRequest(
            f"{who} has an answer URL, which a {provider} account cannot use: give it a "
            f"message instead (`dialer campaign set {campaign_id} --message …`)"
        )
    refusal = unsupported_option(provider, row.get("provider_options") or {})
    if refusal is not None:
        raise InvalidRequest(
            f"{who}: {refusal.field}: {refusal.message} "
            f"(`dialer campaign set {campaign_id}` can change it)"
        )
    undialable = undialable_destinations(conn, campaign_id, provider)
    if undialable is None:
        return
    if fallback is not None:
        raise InvalidRequest(
            f"{who}: {undialable.describe(campaign_id, provider)}: give it fallbacks whose providers dial "
            f"them (`dialer campaign set {campaign_id} --fallback-account NAME`, or --no-fallbacks)"
        )
    raise InvalidRequest(
        f"{undialable.describe(campaign_id, provider)}: give it an account whose provider dials them "
        f"(`dialer campaign set {campaign_id} --account NAME`), or load the list again with this "
        "account, which rejects each of them with its line"
    )
