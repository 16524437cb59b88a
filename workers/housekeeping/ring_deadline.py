"""Calls still ringing at their campaign's ring timeout, ended through the carrier's hang-up API.

Where the only ring bound a carrier takes also bounds the conversation (Vobiz `hangup_on_ring`, "from start
of ringing to hangup", vobiz-make-call.txt l.43, read as ringing and talk: the account option
`hangup_on_ring` "call", the default), the create request asks for ring timeout + time limit so that no
answered call is cut short, and this sweep (run by the reaper every few seconds) ends each call that is
still unanswered when its ring timeout has passed. Ringing is counted from the ring callback's arrival
(else from the send: a bulk's calls are placed at the carrier's pace, so the later ones may have rung less).
A call is asked about for a short window after its deadline only: its hangup callback usually follows at
once, and one that is lost is the reaper's like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import psycopg

from campaigns.accounts import AccountCredentials, load_account
from campaigns.call_options import DEFAULT_RING_TIMEOUT_S
from workers.providers.base import ProviderAdapter
from workers.providers.errors import ProviderError
from workers.providers.registry import PROVIDERS, adapter_for

# Providers whose ring bound, read as ringing and talk, leaves the ring timeout to this sweep.
SWEPT_PROVIDERS = sorted(kind for kind, adapter in PROVIDERS.items()
                         if adapter.traits.api.ring_timeout_by_hangup)
# How long after its deadline a ringing call is still asked to end (the reaper's tick is 5 s).
ASK_WINDOW_S = 120
BATCH = 200

OVERDUE_RINGS = """
SELECT a.id, a.account_id, a.request_uuid, a.call_uuid FROM (
    SELECT a.id, a.account_id, a.request_uuid, a.call_uuid,
           coalesce((SELECT min(e.received_at) FROM call_event e
                      WHERE e.attempt_id = a.id AND e.kind = 'ring'), a.sent_at)
           + make_interval(secs => coalesce((c.provider_options->>'ring_timeout')::int, %(default)s)) AS due
    FROM call_attempt a
    JOIN campaign c ON c.id = a.campaign_id
    JOIN provider_account p ON p.id = a.account_id
    WHERE a.status IN ('sent', 'ringing') AND a.sent_at IS NOT NULL
      AND (a.request_uuid IS NOT NULL OR a.call_uuid IS NOT NULL)
      AND p.provider = ANY(%(providers)s) AND coalesce(p.options->>'hangup_on_ring', 'call') = 'call'
) a
WHERE a.due < now() AND a.due > now() - make_interval(secs => %(window)s)
ORDER BY a.id LIMIT %(batch)s
"""


@dataclass
class RingDeadlineReport:
    ended: int = 0  # the carrier took the hang-up
    already_ended: int = 0  # it no longer knew the call
    errors: list[str] = field(default_factory=list)


def end_overdue_rings(conn: psycopg.Connection, client: httpx.Client) -> RingDeadlineReport:
    """Ask the carrier to end every call still unanswered past its ring timeout (autocommit connection)."""
    report = RingDeadlineReport()
    rows = conn.execute(OVERDUE_RINGS, {"default": DEFAULT_RING_TIMEOUT_S, "providers": list(SWEPT_PROVIDERS),
                                        "window": ASK_WINDOW_S, "batch": BATCH}).fetchall()
    accounts: dict[int, tuple[AccountCredentials, ProviderAdapter]] = {}
    for attempt_id, account_id, request_uuid, call_uuid in rows:
        if account_id not in accounts:
            creds, _ = load_account(conn, account_id)
            accounts[account_id] = (creds, adapter_for(creds.provider))
        creds, adapter = accounts[account_id]
        try:
            # The swept providers' ids are interchangeable (Vobiz l.51-53): either names the placed call.
            if adapter.hang_up(client, creds, None, call_uuid or request_uuid):
                report.ended += 1
            else:
                report.already_ended += 1
        except ProviderError as exc:
            report.errors.append(f"attempt {attempt_id}: {exc}")
    return report
