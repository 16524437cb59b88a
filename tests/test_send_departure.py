"""A timed send counts as gone only once its bytes are in the kernel (workers.dialing.departures).

The limiter counts a send as reaching the carrier no later than its reported lateness plus NETWORK_S after
its booked instant; a send whose bytes leave after that instant can share a strict sliding second with a send
booked a window later (one 429 in 240 sends at 20 CPS on a busy host). The carrier here stamps arrivals with
the kernel's receive time (simulator.stamping, as the simulator does), so the test compares the instant the
sender reported with the instant the bytes really arrived, over a real socket on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import aiohttp
import pytest

from simulator import stamping
from workers.dialing.departures import DEPARTING, Departure, DepartureEventLoop
from workers.dialing.send_booking import NETWORK_S
from workers.dialing.timed_sender import SendSlot, TimedSender, timed_client

STALL_S = 0.08  # longer than NETWORK_S: a loop turn on a starved 2-core host took up to 27 ms


class StampingCarrier:
    """An HTTP/1.1 server on 127.0.0.1 that answers 201 and keeps each request's kernel receive instant
    (epoch seconds, the instant its last bytes reached this host)."""

    def __init__(self) -> None:
        assert stamping.supported(), "kernel receive stamps are needed (Linux)"
        self.arrivals: list[float] = []
        self.loop = stamping.StampingEventLoop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        sock = stamping_listener()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, sock=sock), self.loop).result()
        self.port = sock.getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                self.arrivals.append(float(writer.transport.get_extra_info(stamping.RX_TIME)))
                writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def close(self) -> None:
        async def shut() -> None:
            self.server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def stamping_listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stamping.enable(sock)  # accepted sockets inherit it
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def carrier() -> Iterator[StampingCarrier]:
    server = StampingCarrier()
    yield server
    server.close()


def epoch_to_monotonic(epoch: float) -> float:
    return epoch - (time.time() - time.monotonic())


def test_a_send_reaches_the_carrier_no_later_than_it_is_counted_to_whatever_its_loop_does_next(
    carrier: StampingCarrier,
) -> None:
    """The sender's loop is busy for STALL_S with whatever became ready as the send was counted gone (other
    sends waking, answers being read, a starved thread): the bytes must already be out by then. Before, the
    send was counted gone when aiohttp started the request's head, and its bytes went a loop turn later."""
    sender = TimedSender()  # the production wire, aiohttp, on the sender's own loop
    reported: list[float] = []

    def counted_gone(lateness_s: float) -> None:
        reported.append(lateness_s)
        asyncio.get_running_loop().call_soon(time.sleep, STALL_S)  # the loop's next turn is slow

    try:
        with timed_client(sender) as http:
            for _ in range(3):
                request = http.build_request("POST", f"http://127.0.0.1:{carrier.port}/calls",
                                             json={"to": "+12125550100"})
                due = time.monotonic() + 0.05
                response = sender.send(request, SendSlot(due, max_late_s=1.0, on_left=counted_gone))
                assert response.status_code == 201
                arrival = epoch_to_monotonic(carrier.arrivals[-1])
                # What the limiter is told (workers.dialing.send_booking.SendBooking.left): it reached the
                # carrier at most lateness + NETWORK_S after its booked instant.
                counted_reach = due + reported[-1] + NETWORK_S
                assert arrival <= counted_reach, (
                    f"arrived {1000 * (arrival - counted_reach):.1f} ms after the instant it was counted to")
    finally:
        sender.close()


def test_a_send_found_late_at_its_write_sends_nothing_and_says_why(carrier: StampingCarrier) -> None:
    """The last lateness check is made at the write itself: refused there, not one byte reaches the carrier,
    and the client's error gives way to the refusal (so the caller books the send again)."""

    class Late(Exception):
        pass

    checks: list[str] = []

    def check() -> None:
        checks.append("armed" if departure.armed else "connection")
        if departure.armed:
            raise Late()

    departure = Departure(check, lambda: None)

    async def in_hand(session: aiohttp.ClientSession, ctx: object, params: object) -> None:
        departure.check()
        departure.arm()

    async def post() -> None:
        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(in_hand)
        async with aiohttp.ClientSession(trace_configs=[trace]) as session:
            DEPARTING.set(departure)
            await session.post(f"http://127.0.0.1:{carrier.port}/calls", data=b'{"to": "+12125550100"}')

    loop = DepartureEventLoop()
    try:
        with pytest.raises(aiohttp.ClientError):
            loop.run_until_complete(post())
    finally:
        loop.close()
    assert isinstance(departure.refusal, Late) and checks == ["connection", "armed"]
    assert not departure.written and not departure.departed
    time.sleep(0.1)
    assert carrier.arrivals == []
