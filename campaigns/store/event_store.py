"""Durable storage of carrier events, by one INSERT: callbacks with group commit (many concurrent requests,
one INSERT and one commit per batch; a request is answered 2xx only after the commit that holds its event,
invariant 4), and one at a time the carrier's answers the reaper asked for (`store_event`)."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

MAX_BATCH = 500
# How long a batch waits for a database connection before its callbacks get 503: well under the carriers'
# callback timeouts (Vobiz: 3 s), so a carrier hears "retry" instead of timing out.
CONNECTION_WAIT_S = 2.0

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


def event_records(rows: Sequence[EventRow]) -> tuple[str]:
    """Rows as INSERT_EVENTS' one parameter: a JSON array, one orjson call."""
    return (orjson.dumps([
        {"provider": r.provider, "account_id": r.account_id, "event_key": r.event_key, "kind": r.kind,
         "batch_id": r.batch_id, "request_uuid": r.request_uuid, "call_uuid": r.call_uuid,
         "destination": r.destination, "payload": r.payload, "headers": r.headers} for r in rows],
        default=str).decode(),)


def store_event(conn: psycopg.Connection, row: EventRow) -> bool:
    """Store one event unless its key is already stored (the caller commits); True if it was new."""
    return conn.execute(INSERT_EVENTS, event_records([row])).fetchone() is not None


class StoreUnavailable(Exception):
    """The event could not be committed; the carrier must be told to retry (503)."""


class Unstorable(Exception):
    """Postgres refuses this event's data itself (e.g. a NUL character in its JSON): retrying cannot help."""


class EventWriter:
    """Queues events from request handlers and commits them in batches."""

    def __init__(self, pool: AsyncConnectionPool, stored: threading.Event | None = None,
                 writers: int = 2) -> None:
        self.pool = pool
        self.queue: asyncio.Queue[tuple[EventRow, asyncio.Future[None]]] = asyncio.Queue()
        self.stored = stored or threading.Event()
        self.stored_ids = stored_ids(self.stored)
        self.writers = writers
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._run()) for _ in range(self.writers)]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def store(self, row: EventRow) -> None:
        """Return once the event is committed (or was already stored); raise StoreUnavailable otherwise."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((row, future))
        await future

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < MAX_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[EventRow, asyncio.Future[None]]]) -> None:
        try:
            ids = await self._write([row for row, _ in batch])
        except (psycopg.DataError, orjson.JSONEncodeError) as exc:  # one event's data, not the store
            if len(batch) > 1:  # one bad event must not refuse its neighbours: store them one by one
                for item in batch:
                    await self._commit([item])
                return
            log.warning("callback refused by the store: %s", exc)
            _settle(batch, Unstorable(str(exc)))
            return
        except Exception as exc:  # any other failure: none of these is stored, all get 503
            log.warning("callback store failed for %d events: %s", len(batch), exc)
            _settle(batch, StoreUnavailable(str(exc)))
            return
        _settle(batch, None)
        self.stored_ids.extend(ids)  # duplicates of stored events return no id: nothing to apply
        self.stored.set()

    async def _write(self, rows: list[EventRow]) -> list[int]:
        records = event_records(rows)
        async with self.pool.connection(timeout=CONNECTION_WAIT_S) as conn:
            cur = await conn.execute(INSERT_EVENTS, records)
            return [row[0] for row in await cur.fetchall()]


def _settle(batch: list[tuple[EventRow, asyncio.Future[None]]], error: Exception | None) -> None:
    for _, future in batch:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
