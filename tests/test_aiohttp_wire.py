"""The timed sender over aiohttp, the wire workers use, against real sockets on 127.0.0.1: answers come back
as httpx responses read in full, and every failure says whether anything left (what decides between
retrying and waiting for evidence: a request that may have arrived is never sent again)."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest

from campaigns.accounts import AccountCredentials
from workers.dialing.send_booking import send_at_booked_instant
from workers.dialing.timed_sender import SendSlot, SendTooLate, TimedClient, TimedSender, timed_client
from workers.dialing.wires import AiohttpWire
from workers.providers.errors import Ambiguous, Transient

ACCOUNT = AccountCredentials(account_id=1, provider="bandwidth", auth_id="acct", auth_token="secret-token",
                             base_url="http://127.0.0.1")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Carrier:
    """A raw HTTP/1.1 server in its own thread; `handler` decides what each connection gets."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.received: list[bytes] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop).result()
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.handler(reader, writer)

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        body = await reader.readexactly(length)
        self.received.append(head + body)
        return body

    def close(self) -> None:
        async def shut() -> None:
            self.server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:  # connections still being served
                task.cancel()

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def answer(status: int, body: bytes, *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"content-length: {len(body)}", "content-type: application/json", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@pytest.fixture
def sender() -> Iterator[TimedSender]:
    timed = TimedSender()  # no transport given: the production wire, aiohttp
    yield timed
    timed.close()


def send(
    http: TimedClient, port: int, slot: SendSlot | None = None, *, read_s: float = 5.0
) -> httpx.Response:
    request = http.build_request("POST", f"http://127.0.0.1:{port}/calls", json={"to": "+12125550100"},
                                 timeout=httpx.Timeout(5.0, read=read_s))
    return send_at_booked_instant(http, request, slot or SendSlot(time.monotonic(), max_late_s=10.0), ACCOUNT)


def test_workers_send_over_aiohttp() -> None:
    timed = TimedSender()
    try:
        assert isinstance(timed._wire, AiohttpWire)
    finally:
        timed.close()


def test_an_answer_comes_back_as_an_httpx_response_read_in_full(sender: TimedSender) -> None:
    async def created(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            body = await carrier.read_request(reader)
            assert json.loads(body) == {"to": "+12125550100"}
            writer.write(answer(201, gzip.compress(b'{"callId": "c-1"}'), "content-encoding: gzip",
                                "x-carrier: yes"))

    carrier = Carrier(created)
    try:
        with timed_client(sender) as http:
            first, second = send(http, carrier.port), send(http, carrier.port)
        assert first.status_code == 201 and first.json() == {"callId": "c-1"}  # decoded once, by httpx
        assert first.headers["x-carrier"] == "yes" and second.json() == {"callId": "c-1"}
        head = carrier.received[0].split(b"\r\n\r\n")[0].lower()
        assert head.count(b"host:") == 1 and head.count(b"content-length:") == 1
        assert b"user-agent: dialer/" in head and b"authorization" not in head
    finally:
        carrier.close()


def test_nothing_listening_is_a_request_not_sent(sender: TimedSender) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed when the block ends: nothing listens there
    with timed_client(sender) as http, pytest.raises(Transient):
        send(http, port)


def test_no_answer_after_sending_is_ambiguous(sender: TimedSender) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await carrier.read_request(reader)
        await asyncio.sleep(5)

    carrier = Carrier(silent)
    try:
        with timed_client(sender) as http, pytest.raises(Ambiguous):
            send(http, carrier.port, read_s=0.2)
        assert len(carrier.received) == 1
    finally:
        carrier.close()


def test_a_connection_dropped_after_the_request_arrived_is_ambiguous(sender: TimedSender) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await carrier.read_request(reader)
        writer.close()

    carrier = Carrier(hang_up)
    try:
        with timed_client(sender) as http, pytest.raises(Ambiguous):
            send(http, carrier.port)
        assert len(carrier.received) == 1, "a POST is never sent twice by the client"
    finally:
        carrier.close()


def test_a_send_kept_waiting_for_a_connection_past_its_lateness_sends_nothing() -> None:
    """The lateness that counts is the first byte's: with every connection busy, a send that gets one past
    its allowed lateness is refused there, and the carrier never sees it."""
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await carrier.read_request(reader)
            await asyncio.sleep(0.3)
            writer.write(answer(201, b"{}"))

    carrier = Carrier(slow)
    timed = TimedSender()
    timed._wire = AiohttpWire(max_connections=1, keepalive_s=30.0)  # one line to the carrier
    try:
        with timed_client(timed) as http:
            busy = threading.Thread(target=send, args=(http, carrier.port))
            busy.start()
            time.sleep(0.05)  # the only connection is now held by the first request
            with pytest.raises(SendTooLate):
                send(http, carrier.port, SendSlot(time.monotonic(), max_late_s=0.1))
            busy.join()
        assert len(carrier.received) == 1
    finally:
        timed.close()
        carrier.close()


def test_the_leave_is_reported_with_its_lateness(sender: TimedSender) -> None:
    async def created(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await carrier.read_request(reader)
        writer.write(answer(201, b"{}"))

    carrier = Carrier(created)
    reported: list[float] = []
    try:
        with timed_client(sender) as http:
            due = time.monotonic() + 0.05
            send(http, carrier.port, SendSlot(due, max_late_s=1.0, slack_s=0.004, on_left=reported.append))
        assert len(reported) == 1 and 0.004 <= reported[0] < 0.5  # the booking's round trip is in it
    finally:
        carrier.close()
