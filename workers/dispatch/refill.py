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
BLOCK_S. Only a line-bound account announces (the dispatcher flags it: its free lines, not its CPS, hold
the claims back and destinations wait), so where the CPS binds, or nothing waits, a hangup wakes nobody.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

import psycopg
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
# A pass that found free lines covered by queued destinations looks again this long after, at most
# MAX_RECHECKS times in a row: those rows are either being dialed (then the line is not free) or counted
# twice for a moment (dispatcher.covered_by_queued), and the look again fills the line.
RECHECK_S = 0.1
MAX_RECHECKS = 3


class Rechecks:
    """When to look again at which account (pure: the listener's clock is passed in)."""

    def __init__(self) -> None:
        self._due: dict[int, tuple[float, int]] = {}  # account -> (when, looks again so far)

    def wait_s(self, now: float, block_s: float) -> float:
        """How long the listener may block for announcements: until the next look again is due."""
        if not self._due:
            return block_s
        return max(0.01, min(block_s, min(when for when, _ in self._due.values()) - now))

    def due(self, now: float, announced: list[int]) -> list[int]:
        """The accounts to look at again now, besides those just announced."""
        return [a for a, (when, _) in self._due.items() if when <= now and a not in announced]

    def after_pass(self, account_id: int, look_again: bool, now: float) -> None:
        """Record one pass over the account: schedule a look again if it asks for one and may have more."""
        _, looks = self._due.pop(account_id, (0.0, 0))
        if look_again and looks < MAX_RECHECKS:
            self._due[account_id] = (now + RECHECK_S, looks + 1)

    def announced(self, account_id: int) -> None:
        """A fresh announcement: its pass starts a new run of looks again."""
        self._due.pop(account_id, None)


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


def refill_account(account_id: int, enqueue: Enqueue) -> bool:
    """The dispatcher's pass for this account, now, on this process's pool and budgets. True if it should be
    looked at again shortly (free lines it saw covered by queued destinations, or another pass held it)."""
    with get_pool().connection() as conn:
        report = dispatch_account(conn, get_budgets(), enqueue, account_id, wait_s=TURN_WAIT_S)
    return report is None or report.covered_by_queued.get(account_id, 0) > 0


class LineRefill(threading.Thread):
    """Pops line-freed announcements and refills each account named, until stopped."""

    def __init__(
        self, client: redis.Redis, refill: Callable[[int], bool], *, block_s: float = BLOCK_S
    ) -> None:
        super().__init__(name="line-refill", daemon=True)
        self.client = client
        self.refill = refill
        self.block_s = block_s
        self.stopping = threading.Event()
        self.rechecks = Rechecks()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.once()
            except (redis.ConnectionError, redis.TimeoutError, psycopg.OperationalError) as exc:
                # Redis or Postgres away: one line a second, not a traceback per hangup.
                log.warning("line refill waits: %s; the dispatcher tick covers the lines meanwhile", exc)
                self.stopping.wait(ERROR_PAUSE_S)
            except Exception:
                log.exception("line refill failed; the dispatcher tick covers the lines meanwhile")
                self.stopping.wait(ERROR_PAUSE_S)

    def once(self) -> None:
        """Wait for announcements (or the next look again), then make each pass due."""
        announced = freed_accounts(self.client, self.rechecks.wait_s(time.monotonic(), self.block_s))
        for account_id in announced:
            self.rechecks.announced(account_id)
        for account_id in announced + self.rechecks.due(time.monotonic(), announced):
            look_again = self.refill(account_id)
            self.rechecks.after_pass(account_id, look_again, time.monotonic())


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
