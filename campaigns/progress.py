"""What `dialer campaign status ID --follow` shows on each refresh: calls per second now against the
budget, live calls against the concurrency limit, outcomes so far and the ETA. The figures are read from
Postgres (`read_figures`); the rate and the ETA are pure arithmetic on successive readings (`Progress`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import psycopg

from campaigns import control
from campaigns.account_health import describe_circuit

RATE_WINDOW_S = 5.0  # "CPS now" counts the requests sent in this many seconds
ETA_WINDOW_S = 30.0  # the ETA extrapolates from how fast destinations finished over this long
LIVE_STATUSES = ("dialing", "ringing", "answered")

_BUDGET = """
SELECT least(coalesce(c.cps, a.cps), a.cps), a.max_concurrent, c.max_concurrent
FROM campaign c LEFT JOIN provider_account a ON a.id = c.account_id WHERE c.id = %s
"""
_SENT_RECENTLY = """
SELECT count(*) FROM call_attempt
WHERE account_id = %s AND created_at > now() - make_interval(secs => %s) AND campaign_id = %s
  AND sent_at > now() - make_interval(secs => %s)
"""


@dataclass(frozen=True)
class Figures:
    """One reading of a campaign."""

    at: float  # monotonic seconds
    status: control.CampaignStatus
    sent_recently: int  # requests sent in the last RATE_WINDOW_S
    cps_budget: float | None
    max_concurrent: int | None

    @property
    def total(self) -> int:
        return sum(self.status.by_status.values())

    @property
    def live(self) -> int:
        return sum(self.status.by_status.get(k, 0) for k in LIVE_STATUSES)

    @property
    def cps_now(self) -> float:
        return self.sent_recently / RATE_WINDOW_S


def read_figures(conn: psycopg.Connection, campaign_id: int, at: float) -> Figures:
    st = control.status(conn, campaign_id)
    budget = conn.execute(_BUDGET, (campaign_id,)).fetchone() or (None, None, None)
    cps, account_max, campaign_max = budget
    sent = 0
    if st.account_id is not None:
        row = conn.execute(
            _SENT_RECENTLY, (st.account_id, RATE_WINDOW_S + 60, campaign_id, RATE_WINDOW_S)
        ).fetchone()
        sent = int(row[0]) if row else 0
    limits = [m for m in (account_max, campaign_max) if m is not None]
    return Figures(at, st, sent, cps, min(limits) if limits else None)


def eta_seconds(remaining: int, finish_rate: float | None) -> float | None:
    """Seconds left at the recent finishing rate; 0 when nothing remains, None when nothing finishes."""
    if remaining <= 0:
        return 0.0
    if not finish_rate or finish_rate <= 0:
        return None
    return remaining / finish_rate


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@dataclass
class Progress:
    """Successive readings of one campaign; the finishing rate over the last ETA_WINDOW_S gives the ETA."""

    readings: deque[Figures] = field(default_factory=deque)

    def add(self, figures: Figures) -> None:
        self.readings.append(figures)
        while len(self.readings) > 2 and figures.at - self.readings[0].at > ETA_WINDOW_S:
            self.readings.popleft()

    @property
    def latest(self) -> Figures:
        return self.readings[-1]

    def finish_rate(self) -> float | None:
        """Destinations finished per second over the window; None until two readings are apart."""
        first, last = self.readings[0], self.readings[-1]
        if last.at - first.at <= 0:
            return None
        return (last.status.finished - first.status.finished) / (last.at - first.at)

    def eta(self) -> float | None:
        last = self.latest
        return eta_seconds(last.total - last.status.finished, self.finish_rate())

    def rows(self) -> list[tuple[str, str]]:
        """The figures as (what, now) pairs: the live table of `dialer campaign status --follow` and the
        console's live panel show these same rows."""
        f = self.latest
        st = f.status
        budget = f"{f.cps_budget:g}" if f.cps_budget is not None else "?"
        limit = str(f.max_concurrent) if f.max_concurrent is not None else "?"
        rows = [("calls per second (now / budget)", f"{f.cps_now:.1f} / {budget}"),
                ("live calls (now / limit)", f"{f.live} / {limit}"),
                ("destinations finished", f"{st.finished} / {f.total}")]
        rows += [(f"  {outcome}", str(count)) for outcome, count in sorted(st.by_outcome.items())
                 if outcome != "-"]
        rows += [("waiting to retry", str(st.by_status.get("retry_wait", 0))),
                 ("429s met", str(st.throttled)), ("ETA", format_duration(self.eta()))]
        return rows

    def account_rows(self) -> list[tuple[str, str]]:
        """Each account's circuit (issue 23), for the CLI's live view: which carrier takes the attempts, and
        why another does not. Apart from rows() because the console shows only the accounts a key reaches."""
        return [(f"account {a.name} ({a.role})", describe_circuit(a)) for a in self.latest.status.accounts]

    def line(self) -> str:
        """One plain line per refresh (for logs and pipes)."""
        f = self.latest
        budget = f"{f.cps_budget:g}" if f.cps_budget is not None else "?"
        limit = str(f.max_concurrent) if f.max_concurrent is not None else "?"
        outcomes = (
            " ".join(f"{k}={v}" for k, v in sorted(f.status.by_outcome.items()) if k != "-") or "none yet"
        )
        return (
            f"campaign {f.status.id} {f.status.state}: cps {f.cps_now:.1f}/{budget} · "
            f"live {f.live}/{limit} · done {f.status.finished}/{f.total} · outcomes {outcomes} · "
            f"429s {f.status.throttled} · "
            f"eta {format_duration(self.eta())}"
            + "".join(f" · {a.name} {a.state.value}" for a in f.status.accounts)
        )
