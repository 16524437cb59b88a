"""Durable storage of carrier events: callbacks with group commit (many concurrent requests, one transaction
per batch; a request is answered 2xx only after the commit that holds its event, invariant 4), and one at
a time the carrier's answers the reaper asked for (`store_event`).

With an applier given (`apply`, the API's workers.callbacks.apply_on_store), a batch is applied in the
transaction that stores it: the applier locks the matched attempts and decides their moves, then one
statement writes the attempts, the destinations and the events (already marked applied, with their
attempt), and one commit makes all of it durable: no second transaction, no event row written twice, no
wait between storing and applying. A duplicate (a carrier's retry of an event already stored) is decided
with the rest and its row skipped by the insert: the moves are forward-only, so applying an event again
changes nothing. If applying fails (a value the transition cannot take, a lock held too long), the batch
is stored as it is and its ids handed to the API's applier thread (`stored_ids`), which applies them one
by one if it must: storing never waits on applying.

The batches are written by a thread on a blocking connection (a statement costs a quarter of the CPU it
costs through psycopg's asyncio layer, on the process that also serves every callback's HTTP); request
handlers queue their events and await a future that the writer settles on the event loop. One writer by
default: what arrives during one transaction is the next batch, and a batch's fixed cost (four round
trips, a slot release) is the larger part of a small batch's; a second writer halved the batches and cost
more CPU per callback than it saved in waiting.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import psycopg
from psycopg_pool import ConnectionPool

from campaigns.config import get_settings
from campaigns.store.applied_events import (
    WRITE_ATTEMPTS,
    WRITE_DESTINATIONS,
    DestinationMove,
    attempt_records,
    destination_records,
)
from campaigns.store.unmatched_events import bounded_payload

log = logging.getLogger(__name__)

MAX_BATCH = 500
# How long a batch waits for a database connection before its callbacks get 503: well under the carriers'
# callback timeouts (Vobiz: 3 s), so a carrier hears "retry" instead of timing out.
CONNECTION_WAIT_S = 2.0
# How long applying a batch may wait for an attempt's row lock (a dial step recording its ids, a sweep)
# before the batch is stored without applying: the carriers are waiting for their answers.
APPLY_LOCK_WAIT = "500ms"

# The batch travels as one JSON array (one orjson call here, one parse in Postgres): psycopg's per-element
# array dumping of ten columns cost more than the rest of the insert.
INSERT_EVENTS = """
INSERT INTO call_event (provider, account_id, event_key, kind, batch_id, request_uuid, call_uuid, destination,
                        payload, headers)
SELECT r.provider, r.account_id, r.event_key, r.kind, r.batch_id, r.request_uuid, r.call_uuid, r.destination,
       r.payload, r.headers
FROM jsonb_to_recordset(%s::jsonb) AS r(provider text, account_id bigint, event_key text, kind text,
     batch_id uuid, request_uuid text, call_uuid text, destination text, payload jsonb, headers jsonb)
ON CONFLICT (provider, account_id, event_key) DO NOTHING
RETURNING id
"""
# The moves a batch's applier decided and the batch itself, already applied, in one statement.
STORE_APPLIED = f"""
WITH moved_attempts AS ({WRITE_ATTEMPTS}), moved_destinations AS ({WRITE_DESTINATIONS})
INSERT INTO call_event (provider, account_id, event_key, kind, batch_id, request_uuid, call_uuid, destination,
                        payload, headers, applied_at, attempt_id)
SELECT r.provider, r.account_id, r.event_key, r.kind, r.batch_id, r.request_uuid, r.call_uuid, r.destination,
       r.payload, r.headers, CASE WHEN r.attempt_id IS NOT NULL THEN now() END, r.attempt_id
FROM jsonb_to_recordset(%s::jsonb) AS r(provider text, account_id bigint, event_key text, kind text,
     batch_id uuid, request_uuid text, call_uuid text, destination text, payload jsonb, headers jsonb,
     attempt_id bigint)
ON CONFLICT (provider, account_id, event_key) DO NOTHING
"""

_handoff_lock = threading.Lock()
_handoffs: weakref.WeakKeyDictionary[threading.Event, deque[int]] = weakref.WeakKeyDictionary()


def stored_ids(stored: threading.Event) -> deque[int]:
    """Ids of events committed but not yet taken by the applier, shared through the wake-up event that the
    writer sets and the applier waits on: the applier applies exactly these, no table scan, no cursor that
    out-of-order commits could pass."""
    with _handoff_lock:
        ids = _handoffs.get(stored)
        if ids is None:
            ids = _handoffs[stored] = deque()
        return ids


@dataclass(frozen=True)
class EventRow:
    provider: str
    account_id: int
    event_key: str
    kind: str
    batch_id: uuid.UUID | None
    request_uuid: str | None
    call_uuid: str | None
    destination: str | None
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)  # none for an answer the reaper asked for


def event_records(rows: Sequence[EventRow], attempt_of: dict[int, int] | None = None) -> tuple[str]:
    """Rows as INSERT_EVENTS' one parameter: a JSON array, one orjson call; with `attempt_of` (row's place
    -> attempt), as STORE_APPLIED's events."""
    attempts = attempt_of or {}
    return (orjson.dumps([
        {"provider": r.provider, "account_id": r.account_id, "event_key": r.event_key, "kind": r.kind,
         "batch_id": r.batch_id, "request_uuid": r.request_uuid, "call_uuid": r.call_uuid,
         "destination": r.destination, "payload": r.payload, "headers": r.headers,
         "attempt_id": attempts.get(i)} for i, r in enumerate(rows)],
        default=str).decode(),)


def distinct_rows(rows: Sequence[EventRow]) -> list[EventRow]:
    """The first row of each event key, in key order: a carrier's retry in the same batch is the same event,
    and two batches that insert in one order cannot deadlock on each other's keys."""
    first: dict[tuple[str, int, str], EventRow] = {}
    for row in rows:
        first.setdefault((row.provider, row.account_id, row.event_key), row)
    return [first[key] for key in sorted(first)]


@dataclass
class StoreMoves:
    """What a batch's applier decided, for the writer to write with the batch: each row's attempt (by its
    place in the batch; a row absent here is stored unapplied), the attempts as (id, *ATTEMPT_FIELDS) and
    the destinations that moved, and what to do once it is all committed (free slots)."""

    attempt_of: dict[int, int] = field(default_factory=dict)
    attempts: list[tuple[Any, ...]] = field(default_factory=list)
    destinations: list[DestinationMove] = field(default_factory=list)
    after_commit: Callable[[], None] | None = None


# Decides a batch's moves under row locks, in the writer's open transaction (workers.callbacks).
ApplyOnStore = Callable[[psycopg.Connection, Sequence[EventRow]], StoreMoves]


def store_event(conn: psycopg.Connection, row: EventRow) -> bool:
    """Store one event unless its key is already stored (the caller commits); True if it was new."""
    return conn.execute(INSERT_EVENTS, event_records([row])).fetchone() is not None


def store_applied(conn: psycopg.Connection, rows: Sequence[EventRow], moves: StoreMoves) -> None:
    """Write a batch with the moves its applier decided, in the caller's transaction: one statement. An
    event that matched no call keeps a bounded payload (campaigns.store.unmatched_events)."""
    limit = get_settings().unmatched_event_raw_bytes
    rows = [row if i in moves.attempt_of else replace(row, payload=bounded_payload(row.payload, limit))
            for i, row in enumerate(rows)]
    conn.execute(STORE_APPLIED, (*attempt_records(moves.attempts), *destination_records(moves.destinations),
                                 *event_records(rows, moves.attempt_of)))


class StoreUnavailable(Exception):
    """The event could not be committed; the carrier must be told to retry (503)."""


class Unstorable(Exception):
    """Postgres refuses this event's data itself (e.g. a NUL character in its JSON): retrying cannot help."""


@dataclass
class BatchWritten:
    """A committed batch: the moves applied with it (None: stored unapplied) and the ids of the events it
    stored unapplied, for the applier (an event already stored has no id here)."""

    moves: StoreMoves | None
    unapplied_ids: list[int]


Waiting = tuple[EventRow, "asyncio.Future[None]"]
_STOP = object()


class EventWriter:
    """Queues events from request handlers and commits them in batches, applied with them if it can."""

    def __init__(self, conninfo: str, connect_kwargs: dict[str, Any], stored: threading.Event | None = None,
                 writers: int = 1, apply: ApplyOnStore | None = None) -> None:
        # The writers' own blocking pool (no connection until the first batch: the API starts, and answers
        # 503, while Postgres is down).
        self.pool = ConnectionPool(conninfo, kwargs=connect_kwargs, min_size=0, max_size=writers,
                                   open=False, timeout=CONNECTION_WAIT_S, name="event-writer")
        self.queue: queue.SimpleQueue[Waiting | object] = queue.SimpleQueue()
        self.stored = stored or threading.Event()
        self.stored_ids = stored_ids(self.stored)
        self.writers = writers
        self.apply = apply
        self.threads: list[threading.Thread] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.pool.open(wait=False)
        self.threads = [threading.Thread(target=self._run, name=f"event-writer-{n}", daemon=True)
                        for n in range(self.writers)]
        for thread in self.threads:
            thread.start()

    async def stop(self) -> None:
        for _ in self.threads:
            self.queue.put(_STOP)
        for thread in self.threads:
            await asyncio.to_thread(thread.join, 10)
        await asyncio.to_thread(self.pool.close)

    async def store(self, row: EventRow) -> None:
        """Return once the event is committed (or was already stored); raise StoreUnavailable otherwise."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.put((row, future))
        await future

    def _run(self) -> None:
        while True:
            first = self.queue.get()
            if first is _STOP:
                return
            batch: list[Waiting] = [first]  # type: ignore[list-item]
            while len(batch) < MAX_BATCH:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self.queue.put(_STOP)  # for this thread's next turn: finish the batch first
                    break
                batch.append(item)  # type: ignore[arg-type]
            try:
                self._commit(batch)
            except Exception:  # never leave a request waiting for ever
                log.exception("event writer failed on a batch of %d", len(batch))
                self._settle(batch, StoreUnavailable("event writer failed"))

    def write_batch(self, rows: Sequence[EventRow]) -> BatchWritten:
        """Commit these events, applied with them if the applier can; raise if they cannot be stored."""
        distinct = distinct_rows(rows)
        with self.pool.connection() as conn:
            moves = self._store_applied(conn, distinct) if self.apply is not None else None
            if moves is not None:
                return BatchWritten(moves, [])
            ids = [row[0] for row in conn.execute(INSERT_EVENTS, event_records(distinct)).fetchall()]
        return BatchWritten(None, ids)

    def _commit(self, batch: list[Waiting]) -> None:
        try:
            written = self.write_batch([row for row, _ in batch])
        except (psycopg.DataError, orjson.JSONEncodeError) as exc:  # one event's data, not the store
            if len(batch) > 1:  # one bad event must not refuse its neighbours: store them one by one
                for item in batch:
                    self._commit([item])
                return
            log.warning("callback refused by the store: %s", exc)
            self._settle(batch, Unstorable(str(exc)))
            return
        except Exception as exc:  # any other failure: none of these is stored, all get 503
            log.warning("callback store failed for %d events: %s", len(batch), exc)
            self._settle(batch, StoreUnavailable(str(exc)))
            return
        self._settle(batch, None)
        if written.moves is not None and written.moves.after_commit is not None:
            written.moves.after_commit()  # after the acknowledgements are on their way
        if written.unapplied_ids:  # the applier thread takes them
            self.stored_ids.extend(written.unapplied_ids)
            self.stored.set()

    def _store_applied(self, conn: psycopg.Connection, rows: list[EventRow]) -> StoreMoves | None:
        """Store and apply the batch in one transaction; None if applying failed and nothing was written
        (the caller stores it unapplied). A broken connection raises: nothing can be stored on it."""
        assert self.apply is not None
        try:
            with _applying_transaction(conn):
                moves = self.apply(conn, rows)
                store_applied(conn, rows, moves)
            return moves
        except Exception as exc:
            if conn.broken or conn.closed:
                raise
            log.warning("applying %d callbacks in their commit failed (%s: %s); storing them for the "
                        "applier", len(rows), type(exc).__name__, exc)
        return None

    def _settle(self, batch: list[Waiting], error: Exception | None) -> None:
        """Resolve the batch's futures on their event loop (one hop for the whole batch)."""
        assert self.loop is not None
        try:
            self.loop.call_soon_threadsafe(_settle, batch, error)
        except RuntimeError:  # the loop is closed: the API is shutting down, nobody waits
            log.debug("event loop closed before %d callbacks were answered", len(batch))


@contextmanager
def _applying_transaction(conn: psycopg.Connection) -> Iterator[None]:
    """A transaction on an autocommit connection whose row-lock waits are capped: BEGIN and the cap in one
    round trip (psycopg's transaction() would send them apart), COMMIT at the end, ROLLBACK on any error."""
    conn.execute(f"BEGIN; SET LOCAL lock_timeout = '{APPLY_LOCK_WAIT}'")
    try:
        yield
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except Exception:  # a broken connection: the pool discards it
            log.debug("rollback after a failed batch failed too", exc_info=True)
        raise
    conn.execute("COMMIT")


def _settle(batch: list[Waiting], error: Exception | None) -> None:
    for _, future in batch:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
