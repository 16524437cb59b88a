"""Refill a line the moment it frees, not at the next dispatcher tick.

When a call ends, its slot's release (workers.ratelimit.slots_release.lua, called with call_ended) pushes the
account id on the line-freed list in the same Redis step. A listener thread in each worker process blocks on
that list; for each account it pops, it runs the dispatcher's own pass for that account alone
(workers.dispatch.dispatcher.dispatch_account), which claims as many due destinations as there are free lines
not yet covered by queued ones and enqueues them as an ordinary dial chunk. So every guard still applies where
it always did: the claim is conditional (no double dial), the chunk takes its slots (never over the lines),
books its CPS, screens DNC and windows.

If a listener dies, nothing is left without an owner: destinations it claimed are `queued` under their claim
lease like any chunk's, and the tick still runs. An idle listener costs one blocking Redis command every
BLOCK_S; a hangup with nothing waiting costs one account pass (a few indexed queries).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable

import redis

from campaigns.config import get_settings
from workers import redis_keys
from workers.dispatch.dispatcher import Enqueue, dispatch_account
from workers.pg import get_pool
from workers.ratelimit.process_budgets import get_budgets

log = logging.getLogger(__name__)

BLOCK_S = 5.0  # an idle listener's one Redis command per this long
DRAIN = 200  # announcements taken in one wake-up after the first: a burst of hangups is one pass per account
TURN_WAIT_S = 1.0  # another pass holds the account (a tick's, another listener's): wait this long, then leave
# it to the next tick. It may have counted the free lines before this call ended, so leaving at once
# could leave the line idle until the next tick.
ERROR_PAUSE_S = 1.0  # after a failure (Redis or Postgres away): one log line per this long, not per hangup


def distinct_accounts(raw: Iterable[bytes | str]) -> list[int]:
    """The account ids announced, each once, in the order first announced; malformed entries dropped."""
    seen: dict[int, None] = {}
    for item in raw:
        text = item.decode() if isinstance(item, bytes) else item
        if text.isdigit():
            seen.setdefault(int(text), None)
    return list(seen)


def freed_accounts(client: redis.Redis, block_s: float = BLOCK_S) -> list[int]:
    """Wait up to `block_s` for a line-freed announcement; then the accounts announced so far, each once."""
    key = redis_keys.lines_freed()
    first = client.blpop([key], timeout=block_s)
    if first is None:
        return []
    rest = client.lpop(key, DRAIN) or []
    return distinct_accounts([first[1], *rest])


def refill_account(account_id: int, enqueue: Enqueue) -> None:
    """The dispatcher's pass for this account, now, on this process's pool and budgets."""
    with get_pool().connection() as conn:
        report = dispatch_account(conn, get_budgets(), enqueue, account_id, wait_s=TURN_WAIT_S)
    if report is not None and report.claimed:
        log.debug("refilled account %s: %s", account_id, report.claimed)


class LineRefill(threading.Thread):
    """Pops line-freed announcements and refills each account named, until stopped."""

    def __init__(
        self, client: redis.Redis, refill: Callable[[int], None], *, block_s: float = BLOCK_S
    ) -> None:
        super().__init__(name="line-refill", daemon=True)
        self.client = client
        self.refill = refill
        self.block_s = block_s
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                for account_id in freed_accounts(self.client, self.block_s):
                    self.refill(account_id)
            except Exception:
                log.exception("line refill failed; the dispatcher tick covers the lines meanwhile")
                self.stopping.wait(ERROR_PAUSE_S)


_running: tuple[int, LineRefill] | None = None
_lock = threading.Lock()


def start_line_refill(enqueue: Enqueue) -> LineRefill:
    """Start this process's listener (once per process; a forked child starts its own)."""
    global _running
    with _lock:
        if _running is not None and _running[0] == os.getpid() and _running[1].is_alive():
            return _running[1]
        # Its own client: BLPOP holds a connection for up to BLOCK_S, longer than the budgets' socket timeout.
        client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=BLOCK_S + 5,
                                      socket_connect_timeout=5, health_check_interval=30)
        listener = LineRefill(client, lambda account_id: refill_account(account_id, enqueue))
        listener.start()
        _running = (os.getpid(), listener)
        return listener


def stop_line_refill() -> None:
    """Stop this process's listener, if it runs (it ends within BLOCK_S)."""
    with _lock:
        if _running is not None and _running[0] == os.getpid():
            _running[1].stop()
