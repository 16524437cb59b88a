"""One sender per worker process: each provider request leaves at its booked send time, not when a sleeping
thread happens to wake.

The dial-chunk threads do everything slow (slots, attempt rows, the booking, the pre-send mark) and hand the
built request to this process's sender a little before its booked time. The sender is one asyncio loop in
a daemon thread with a keep-alive connection pool to the carriers (aiohttp: workers.dialing.wires): it
wakes at the booked instant
(`loop.call_at` through `asyncio.sleep`), checks how late it is, and writes the request. With dozens of
threads sharing two cores, a thread's own wake-up was decided by the GIL and the OS scheduler; here only one
thread has to wake on time, and the interpreter is asked to hand it the GIL quickly (`SWITCH_INTERVAL_S`).

A send that would leave later than `SendSlot.max_late_s` after its booked time is not sent (`SendTooLate`):
arriving late it could share a sliding second at the carrier with a send booked a window later. The caller
re-books it. The last check is made just before the send(2) of the request's first byte, and the send counts
as gone (`SendSlot.on_left`) once the kernel holds its bytes, stamped by the loop's own transports
(workers.dialing.departures), not when the HTTP client says it starts writing. A request handed over
without a slot leaves at once.

The dial client of a worker process is a `TimedClient`: a pooled client like any other, on which adapters
build their requests, carrying the process's sender. The dialer's send point
(workers.dialing.send_booking.place_calls) hands each built create request to that sender with its slot.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import httpx

from campaigns.config import get_settings
from workers.dialing.departures import DEPARTING, Departure, DepartureEventLoop
from workers.dialing.wires import AiohttpWire, HttpxWire, Wire
from workers.metrics.send_lateness import observe_lateness, observe_refused_late
from workers.providers.http import client_options

log = logging.getLogger(__name__)

# How long the interpreter lets a thread hold the GIL when another wants it (CPython's default is 5 ms):
# the sender thread must get it within a millisecond or two of its timer firing.
SWITCH_INTERVAL_S = 0.001
# The loop's timer wakes this long before the booked instant and the last of it is spent watching the clock:
# the timer's millisecond rounding and the wait for the GIL then fall before the send, not after it.
WAKE_EARLY_S = 0.001
MAX_CONNECTIONS = 64
KEEPALIVE_EXPIRY_S = 60.0


@dataclass(frozen=True)
class SendSlot:
    """A request's send time on this process's monotonic clock, and how late it may still leave. The
    booked instant may have been up to `slack_s` before `due` (the booking's round trip to Redis): the
    request never leaves before `due`, and its lateness counts from `due - slack_s`."""

    due: float
    max_late_s: float
    slack_s: float = 0.0
    # Told the send's lateness the moment it leaves (on the sender's loop: it must only note it and return).
    on_left: Callable[[float], None] | None = None

    def lateness(self, now: float) -> float:
        return now - self.due + self.slack_s


class SendTooLate(Exception):
    """The request would have left `lateness_s` after its booked time, past what the window allows: it was
    not sent, and the caller re-books it. Deliberately not an httpx error: nothing left this host."""

    def __init__(self, lateness_s: float) -> None:
        super().__init__(f"send not made: {lateness_s * 1000:.1f} ms past its booked time")
        self.lateness_s = lateness_s


def lateness_refused(lateness_s: float, max_late_s: float) -> bool:
    """The rule: a send later than max_late_s after its booked time is refused."""
    return lateness_s > max_late_s


class TimedSender:
    """An asyncio loop in a daemon thread that sends prepared httpx requests at their booked instants, over
    aiohttp (workers.dialing.wires; `transport`: an httpx transport instead, for narrow tests)."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None, nice: int = 0) -> None:
        self._wire: Wire = (HttpxWire(transport) if transport is not None
                            else AiohttpWire(MAX_CONNECTIONS, KEEPALIVE_EXPIRY_S))
        self._nice = nice
        self._loop = DepartureEventLoop()  # its transports stamp when a request's bytes really left
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dialer-sender", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        if self._nice:
            set_thread_nice(self._nice)
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        self._loop.create_task(self._wire.warm_up())
        self._loop.run_forever()

    def send(self, request: httpx.Request, slot: SendSlot | None) -> httpx.Response:
        """Send `request` at the slot's time (at once without one); the carrier's answer, read in full.
        Raises SendTooLate (nothing sent) or the httpx error of the wire."""
        future: Future[httpx.Response] = asyncio.run_coroutine_threadsafe(
            self._send(request, slot), self._loop
        )
        return future.result()

    async def _send(self, request: httpx.Request, slot: SendSlot | None) -> httpx.Response:
        if slot is not None:
            delay = slot.due - time.monotonic() - WAKE_EARLY_S
            if delay > 0:
                await asyncio.sleep(delay)  # the loop's timer (epoll rounds it up to the millisecond)
            while time.monotonic() < slot.due:  # the last moments on the clock: never early, barely late
                pass
            refuse_if_late(slot)
        left: list[float] = []

        def before_first_byte() -> None:
            # Once a connection is in hand (any wait for one, or a connect, is the send's too), and again
            # just before the send(2) of its first byte (workers.dialing.departures). Refusing sends nothing.
            if slot is not None:
                refuse_if_late(slot)

        def gone() -> None:
            # Called once the kernel holds the request's bytes: never before they can reach the carrier.
            now = time.monotonic()
            left.append(now)
            if slot is not None and slot.on_left is not None:
                slot.on_left(slot.lateness(now))

        departure = Departure(before_first_byte, gone)
        DEPARTING.set(departure)  # this task's context: the client's write task inherits it
        response = await self._wire.send(request, departure)
        if slot is not None:
            observe_lateness(slot.lateness(left[0] if left else time.monotonic()))
        return response

    def close(self) -> None:
        """Stop the loop (tests; worker processes just exit)."""
        asyncio.run_coroutine_threadsafe(self._wire.aclose(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def refuse_if_late(slot: SendSlot) -> None:
    """Raise SendTooLate (counted) when leaving now would be later than the slot allows."""
    lateness = slot.lateness(time.monotonic())
    if lateness_refused(lateness, slot.max_late_s):
        observe_refused_late(lateness)
        raise SendTooLate(lateness)


def set_thread_nice(nice: int) -> bool:
    """Give the calling thread this nice value (Linux schedules threads, so only this thread moves); False,
    logged, when the OS refuses (a negative value without CAP_SYS_NICE) or has no per-thread priorities."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (OSError, AttributeError) as exc:  # PermissionError is an OSError
        log.warning("sender thread priority not changed to nice %d (%s): it keeps the process's priority; "
                    "a loaded host then sends later (docs/SCALING.md)", nice, exc)
        return False
    return True


class TimedClient(httpx.Client):
    """A worker's dial client: the pooled client adapters build create requests on, carrying the process's
    timed sender, which writes each booked one at its instant."""

    def __init__(self, sender: TimedSender, **options: Any) -> None:
        super().__init__(**options)
        self.sender = sender


def timed_client(sender: TimedSender) -> TimedClient:
    """A dial client with the settings of every carrier client (workers.providers.http) and this sender."""
    return TimedClient(sender, **client_options())


def leaves_on_time(client: httpx.Client) -> bool:
    """Does this client hand its booked requests to a timed sender (so the caller must not sleep until the
    booked time itself, and must not send a booked request through any other client)?"""
    return isinstance(client, TimedClient)


_lock = threading.Lock()
_sender: tuple[int, TimedSender] | None = None


def process_sender() -> TimedSender:
    """This process's sender, started on first use (and again in a forked child)."""
    global _sender
    with _lock:
        if _sender is None or _sender[0] != os.getpid():
            sys.setswitchinterval(SWITCH_INTERVAL_S)
            _sender = (os.getpid(), TimedSender(nice=get_settings().sender_nice))
        return _sender[1]
