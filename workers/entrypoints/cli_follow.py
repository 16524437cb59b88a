"""`dialer campaign status ID --follow`: a live view until the campaign stops running. On a terminal, a Rich
live table refreshed in place; elsewhere (a pipe, a log file, CI), one line per refresh."""

from __future__ import annotations

import time

import psycopg
from rich.console import Console
from rich.live import Live
from rich.table import Table

from campaigns.db import connect
from campaigns.errors import ServiceUnavailable
from campaigns.progress import Progress, read_figures
from campaigns.states import CampaignState

REFRESH_S = 1.0


def live_table(progress: Progress) -> Table:
    f = progress.latest
    st = f.status
    title = f"campaign {st.id} · {st.name} · {st.state}" + (
        f" ({st.state_reason})" if st.state_reason else ""
    )
    table = Table(title=title, show_header=False)
    table.add_column("what")
    table.add_column("now", justify="right")
    for what, now in progress.rows() + progress.account_rows():
        table.add_row(what, now)
    return table


def follow(
    campaign_id: int, console: Console, *, timeout_s: float | None = None, refresh_s: float = REFRESH_S
) -> Progress:
    """Refresh until the campaign leaves `running` (or the timeout). A database restart meanwhile only
    pauses the view: it reconnects and goes on."""
    started = time.monotonic()
    progress = Progress()
    conn: psycopg.Connection | None = None
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    try:
        if live is not None:
            live.start()
        while True:
            try:
                conn = conn or connect(autocommit=True)
                progress.add(read_figures(conn, campaign_id, time.monotonic()))
            except (psycopg.OperationalError, ServiceUnavailable):
                conn = None
                console.print("database unreachable, retrying")
                time.sleep(refresh_s)
                continue
            if live is not None:
                live.update(live_table(progress), refresh=True)
            else:
                console.print(progress.line(), soft_wrap=True, highlight=False)
            running = progress.latest.status.state == CampaignState.RUNNING
            if not running or (timeout_s is not None and time.monotonic() - started > timeout_s):
                return progress
            time.sleep(refresh_s)
    finally:
        if live is not None:
            live.stop()
        if conn is not None:
            conn.close()
