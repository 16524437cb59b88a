"""The live figures the console shows, read by the functions `dialer campaign status --follow` uses
(campaigns.progress: read_figures, and Progress for the rate, the ETA and the rows shown). Successive
readings of each campaign are kept in this process, so the ETA has a finishing rate to extrapolate from."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from campaigns.listing import list_campaigns
from campaigns.progress import Progress, read_figures
from campaigns.states import CampaignState

KEEP_CAMPAIGNS = 200  # readings kept for at most this many campaigns (the oldest dropped)


class LiveReadings:
    """Each campaign's recent readings in this process."""

    def __init__(self) -> None:
        self._progress: dict[int, Progress] = {}
        self._lock = threading.Lock()

    def read(self, conn: psycopg.Connection, campaign_id: int) -> Progress:
        figures = read_figures(conn, campaign_id, time.monotonic())
        with self._lock:
            progress = self._progress.pop(campaign_id, None) or Progress()
            progress.add(figures)
            self._progress[campaign_id] = progress  # most recent last
            while len(self._progress) > KEEP_CAMPAIGNS:
                del self._progress[next(iter(self._progress))]
            return progress


READINGS = LiveReadings()


@dataclass(frozen=True)
class CampaignLine:
    """One line of the campaigns page: the campaign's row and, while it runs, its live figures."""

    row: dict[str, Any]
    live: list[tuple[str, str]] | None


def campaign_lines(conn: psycopg.Connection, *, state: str | None, account_id: int | None,
                   within_accounts: list[int] | None, limit: int = 200) -> list[CampaignLine]:
    rows = list_campaigns(conn, state=state, account_id=account_id, within_accounts=within_accounts,
                          limit=limit)
    return [CampaignLine(row, READINGS.read(conn, row["id"]).rows()
                         if row["state"] == CampaignState.RUNNING else None) for row in rows]
