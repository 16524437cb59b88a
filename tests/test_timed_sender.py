"""The timed sender: a booked request never leaves before its booked time, one too late is refused and
nothing is sent, and requests without a slot go at once; the dial's send point hands it the slot and maps
its failures. The carrier is an httpx.MockTransport (a narrow unit test of the sender); no figure here is a
timing target, only orderings that hold on any machine."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from campaigns.accounts import AccountCredentials
from workers.dialing.send_booking import send_at_booked_instant
from workers.dialing.timed_sender import (
    SendSlot,
    SendTooLate,
    TimedClient,
    TimedSender,
    lateness_refused,
    leaves_on_time,
    timed_client,
)
from workers.providers.errors import Ambiguous, Rejected, Transient
from workers.providers.http import make_client

ACCOUNT = AccountCredentials(account_id=1, provider="bandwidth", auth_id="acct", auth_token="secret-token",
                             base_url="http://carrier.test")


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
def client(carrier: Carrier) -> Iterator[TimedClient]:
    sender = TimedSender(httpx.MockTransport(carrier))
    with timed_client(sender) as http:
        yield http
    sender.close()


def send_booked(client: TimedClient, path: str, slot: SendSlot) -> httpx.Response:
    """A create request through the dial's send point, at `slot`."""
    request = client.build_request("POST", f"http://carrier.test{path}", json={"to": "+12125550100"})
    return send_at_booked_instant(client, request, slot, ACCOUNT)


def test_the_rule_refuses_only_sends_later_than_allowed() -> None:
    assert not lateness_refused(0.004, 0.005)
    assert not lateness_refused(0.005, 0.005)
    assert lateness_refused(0.0051, 0.005)


def test_a_booked_request_never_leaves_before_its_booked_time(client: TimedClient, carrier: Carrier) -> None:
    due = time.monotonic() + 0.2
    response = send_booked(client, "/calls", SendSlot(due, max_late_s=10.0))
    assert response.status_code == 201 and response.json() == {"callId": "c-1"}
    assert response.request.url.path == "/calls"
    [(arrived, path)] = carrier.arrivals
    assert path == "/calls"
    assert arrived >= due


def test_sends_leave_in_booked_order_whatever_order_they_are_handed_over(
    client: TimedClient, carrier: Carrier
) -> None:
    import threading

    now = time.monotonic()
    slots = {"/late": now + 0.3, "/early": now + 0.15}

    def send(path: str) -> None:
        send_booked(client, path, SendSlot(slots[path], max_late_s=10.0))

    threads = [threading.Thread(target=send, args=(p,)) for p in ("/late", "/early")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [path for _, path in carrier.arrivals] == ["/early", "/late"]
    assert all(arrived >= slots[path] for arrived, path in carrier.arrivals)


def test_a_request_past_its_allowed_lateness_is_refused_and_nothing_is_sent(
    client: TimedClient, carrier: Carrier
) -> None:
    past = SendSlot(time.monotonic() - 1.0, max_late_s=0.005)
    with pytest.raises(SendTooLate) as refused:
        send_booked(client, "/calls", past)
    assert refused.value.lateness_s >= 1.0
    assert carrier.arrivals == []


def test_a_request_without_a_slot_leaves_at_once(client: TimedClient, carrier: Carrier) -> None:
    response = client.sender.send(client.build_request("GET", "http://carrier.test/status"), None)
    assert response.status_code == 201
    assert len(carrier.arrivals) == 1


def test_only_a_client_on_the_timed_sender_leaves_on_time(client: TimedClient) -> None:
    assert leaves_on_time(client)
    with make_client() as plain:
        assert not leaves_on_time(plain)


def test_the_sender_raises_transport_errors_as_httpx_errors(carrier: Carrier) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    sender = TimedSender(httpx.MockTransport(refuse))
    try:
        with timed_client(sender) as http, pytest.raises(httpx.ConnectError):
            sender.send(http.build_request("POST", "http://carrier.test/calls"), None)
    finally:
        sender.close()


@pytest.mark.parametrize(("failure", "error"), [
    (httpx.ConnectError("connection refused"), Transient),  # nothing left this host
    (httpx.ReadTimeout("no answer"), Ambiguous),  # sent: the call may be live
])
def test_the_send_point_maps_transport_errors_as_every_carrier_request_does(
    failure: httpx.TransportError, error: type[Exception]
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise failure

    sender = TimedSender(httpx.MockTransport(fail))
    try:
        with timed_client(sender) as http, pytest.raises(error):
            send_booked(http, "/calls", SendSlot(time.monotonic(), max_late_s=10.0))
    finally:
        sender.close()


def test_the_send_point_maps_a_carrier_refusal_without_the_token_in_its_message() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "bad number for secret-token"})

    sender = TimedSender(httpx.MockTransport(refuse))
    try:
        with timed_client(sender) as http, pytest.raises(Rejected) as refused:
            send_booked(http, "/calls", SendSlot(time.monotonic(), max_late_s=10.0))
        assert "secret-token" not in refused.value.message and refused.value.status == 400
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
        with timed_client(sender) as http, pytest.raises(SendTooLate):
            request = http.build_request("POST", f"http://127.0.0.1:{port}/calls", json={"to": "+1212555"})
            send_at_booked_instant(http, request, SendSlot(time.monotonic() + 0.05, max_late_s=0.05), ACCOUNT)
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
        with timed_client(sender) as http:
            assert send_booked(http, "/calls", SendSlot(time.monotonic(), max_late_s=10.0)).status_code == 201
    finally:
        sender.close()
    assert "sender thread priority not changed to nice -10" in caplog.text


def test_a_send_whose_booking_came_back_late_is_refused_though_its_sender_is_on_time(
    client: TimedClient, carrier: Carrier
) -> None:
    """The booked instant may have been `slack_s` before `due`: 40 ms of slack is past 30 ms allowed."""
    slot = SendSlot(time.monotonic() + 0.02, max_late_s=0.03, slack_s=0.04)
    with pytest.raises(SendTooLate):
        send_booked(client, "/calls", slot)
    assert carrier.arrivals == []
