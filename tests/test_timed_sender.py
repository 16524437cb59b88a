"""The timed sender: a booked request never leaves before its booked time, one too late is refused and
nothing is sent, and requests without a slot go at once. The carrier is an httpx.MockTransport (a narrow
unit test of the sender); no figure here is a timing target, only orderings that hold on any machine."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from workers.dialing.timed_sender import (
    ScheduledTransport,
    SendSlot,
    SendTooLate,
    TimedSender,
    booked_for,
    lateness_refused,
    leaves_on_time,
)
from workers.providers.http import make_client


class Carrier:
    """Records the monotonic time each request reached it."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.arrivals.append((time.monotonic(), request.url.path))
        return httpx.Response(201, json={"callId": "c-1"})


@pytest.fixture
def carrier() -> Carrier:
    return Carrier()


@pytest.fixture
def client(carrier: Carrier) -> Iterator[httpx.Client]:
    sender = TimedSender(httpx.MockTransport(carrier))
    with make_client(transport=ScheduledTransport(sender)) as http:
        yield http
    sender.close()


def test_the_rule_refuses_only_sends_later_than_allowed() -> None:
    assert not lateness_refused(0.004, 0.005)
    assert not lateness_refused(0.005, 0.005)
    assert lateness_refused(0.0051, 0.005)


def test_a_booked_request_never_leaves_before_its_booked_time(client: httpx.Client, carrier: Carrier) -> None:
    due = time.monotonic() + 0.2
    with booked_for(SendSlot(due, max_late_s=10.0)):
        response = client.post("http://carrier.test/calls", json={"to": "+12125550100"})
    assert response.status_code == 201 and response.json() == {"callId": "c-1"}
    [(arrived, path)] = carrier.arrivals
    assert path == "/calls"
    assert arrived >= due


def test_sends_leave_in_booked_order_whatever_order_they_are_handed_over(
    client: httpx.Client, carrier: Carrier
) -> None:
    import threading

    now = time.monotonic()
    slots = {"/late": now + 0.3, "/early": now + 0.15}

    def send(path: str) -> None:
        with booked_for(SendSlot(slots[path], max_late_s=10.0)):
            client.post(f"http://carrier.test{path}")

    threads = [threading.Thread(target=send, args=(p,)) for p in ("/late", "/early")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [path for _, path in carrier.arrivals] == ["/early", "/late"]
    assert all(arrived >= slots[path] for arrived, path in carrier.arrivals)


def test_a_request_past_its_allowed_lateness_is_refused_and_nothing_is_sent(
    client: httpx.Client, carrier: Carrier
) -> None:
    past = SendSlot(time.monotonic() - 1.0, max_late_s=0.005)
    with pytest.raises(SendTooLate) as refused, booked_for(past):
        client.post("http://carrier.test/calls")
    assert refused.value.lateness_s >= 1.0
    assert carrier.arrivals == []


def test_a_request_without_a_slot_leaves_at_once(client: httpx.Client, carrier: Carrier) -> None:
    assert client.get("http://carrier.test/status").status_code == 201
    assert len(carrier.arrivals) == 1


def test_only_a_client_on_the_timed_sender_leaves_on_time(client: httpx.Client) -> None:
    assert leaves_on_time(client)
    with make_client() as plain:
        assert not leaves_on_time(plain)


def test_transport_errors_reach_the_caller_as_httpx_errors(carrier: Carrier) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    sender = TimedSender(httpx.MockTransport(refuse))
    try:
        with make_client(transport=ScheduledTransport(sender)) as http, pytest.raises(httpx.ConnectError):
            http.post("http://carrier.test/calls")
    finally:
        sender.close()


def test_a_request_held_up_before_its_first_byte_past_the_allowed_lateness_is_refused() -> None:
    """The lateness that counts is the first byte's: a send that waited for a connection past its allowed
    lateness is refused there, and the carrier gets nothing."""
    import asyncio

    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(100))
        writer.close()

    async def carrier() -> tuple[asyncio.AbstractServer, int]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return server, server.sockets[0].getsockname()[1]

    class SlowConnect(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(0.2)  # a pool with no free connection, a carrier slow to accept
            return await super().handle_async_request(request)

    sender = TimedSender(SlowConnect())
    try:
        server, port = asyncio.run_coroutine_threadsafe(carrier(), sender._loop).result()
        with make_client(transport=ScheduledTransport(sender)) as http, pytest.raises(SendTooLate):
            with booked_for(SendSlot(time.monotonic() + 0.05, max_late_s=0.05)):
                http.post(f"http://127.0.0.1:{port}/calls", json={"to": "+12125550100"})
        time.sleep(0.1)
        assert b"".join(received) == b"", "the connection may have opened, but no byte of the request left"
        sender._loop.call_soon_threadsafe(server.close)
    finally:
        sender.close()


def test_the_sender_thread_alone_takes_the_configured_nice_value(carrier: Carrier) -> None:
    """DIALER_SENDER_NICE moves only the sender thread: the chunk threads (here, this one) keep theirs.
    A positive value is used because any process may lower its own priority."""
    import os
    import threading

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    wanted = min(19, mine + 5)
    sender = TimedSender(httpx.MockTransport(carrier), nice=wanted)
    try:
        sender_tid = sender._thread.native_id
        assert sender_tid is not None
        assert os.getpriority(os.PRIO_PROCESS, sender_tid) == wanted
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
    finally:
        sender.close()


def test_a_refused_priority_is_logged_and_the_sender_still_sends(
    carrier: Carrier, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import os

    def refuse(*args: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "setpriority", refuse)
    sender = TimedSender(httpx.MockTransport(carrier), nice=-10)
    try:
        with make_client(transport=ScheduledTransport(sender)) as http:
            assert http.post("http://carrier.test/calls").status_code == 201
    finally:
        sender.close()
    assert "sender thread priority not changed to nice -10" in caplog.text


def test_a_send_whose_booking_came_back_late_is_refused_though_its_sender_is_on_time(
    client: httpx.Client, carrier: Carrier
) -> None:
    """The booked instant may have been `slack_s` before `due`: 40 ms of slack is past 30 ms allowed."""
    slot = SendSlot(time.monotonic() + 0.02, max_late_s=0.03, slack_s=0.04)
    with pytest.raises(SendTooLate), booked_for(slot):
        client.post("http://carrier.test/calls")
    assert carrier.arrivals == []
