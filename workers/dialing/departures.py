"""When a timed send really leaves: the instant its bytes are handed to the kernel, stamped by the socket
transport itself, with the last lateness check made just before that write.

The limiter counts a booked send as reaching the carrier no later than when it left plus the network's spread
(NETWORK_S, workers.dialing.send_booking). "When it left" must therefore be when its bytes went, not when a
library said it was about to write them. aiohttp's `on_request_headers_sent` fires before the head is even
serialized, and the bytes follow in a task of their own, a loop turn later: behind every callback ready on
the sender's loop, a wait for the GIL and the OS scheduler. On a busy 2-core host that turn took up to 27 ms,
more than the 20 ms allowance, and a send reached the carrier after the instant it was counted to: one 429
from a strict sliding-second carrier in one full test run (bench/RESULTS.md, "Departures stamped at the
write"). No HTTP client says when its bytes left, but the transport does: its `write()` makes the send(2)
system call.

The sender's loop (`DepartureEventLoop`) gives every TCP connection a `DepartureTransport`. A request about
to be sent sets its `Departure` in the context variable DEPARTING, whose value the client's tasks inherit,
and arms it once its connection is in hand (a TLS handshake writes before that). The first write of an armed
departure runs the lateness check (which may refuse the send, nothing written), writes, and when the kernel
took every byte calls `gone`. A write the kernel took only in part (a full socket buffer) is counted gone when
the answer arrives (`Departure.settle`): the carrier cannot answer before it has the whole request.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from asyncio import constants, selector_events, sslproto
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

Hook = Callable[[], None]


class Departure:
    """One request's departure: `check()` just before its first byte is written (it may raise to send
    nothing) and `gone()` once the kernel holds all of them."""

    __slots__ = ("check", "gone", "armed", "written", "departed", "refusal")

    def __init__(self, check: Hook, gone: Hook) -> None:
        self.check, self.gone = check, gone
        self.armed = False  # the connection is in hand: the next write is the request's
        self.written = False  # its first byte went to the kernel (it may have reached the carrier)
        self.departed = False  # `gone` was called
        self.refusal: BaseException | None = None  # what `check` raised at the write, if anything

    def arm(self) -> None:
        self.armed = True

    def before_write(self) -> None:
        try:
            self.check()
        except BaseException as exc:
            self.refusal = exc  # the client wraps it in its own error; the wire raises this one instead
            raise
        self.written = True

    def after_write(self, all_taken: bool) -> None:
        if all_taken:
            self.depart()

    def depart(self) -> None:
        if not self.departed:
            self.departed = True
            self.gone()

    def settle(self) -> None:
        """The answer is in: a request not yet counted gone (written in part, or through a transport that
        stamps nothing, such as a test's mock) has certainly left by now."""
        self.depart()


DEPARTING: ContextVar[Departure | None] = ContextVar("dialer_departing", default=None)

_SocketTransport: Any = selector_events._SelectorSocketTransport  # type: ignore[attr-defined]


class DepartureTransport(_SocketTransport):  # type: ignore[misc]
    """The stdlib socket transport; the first write of an armed departure is checked and stamped."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        departure = DEPARTING.get()
        if departure is None or not departure.armed or departure.written or not data:
            super().write(data)
            return
        departure.before_write()  # the last lateness check, with nothing but this call before the send(2)
        super().write(data)
        departure.after_write(self.get_write_buffer_size() == 0)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        # One write, so one check and one stamp (Python 3.12+ would otherwise sendmsg without write()).
        self.write(b"".join(list_of_data))


class DepartureEventLoop(asyncio.SelectorEventLoop):
    """The stdlib selector loop whose TCP connections, plain or TLS, use DepartureTransport."""

    def _make_socket_transport(self, sock: socket.socket, protocol: asyncio.BaseProtocol,
                               waiter: asyncio.Future[Any] | None = None, *,
                               extra: dict[str, Any] | None = None,
                               server: asyncio.AbstractServer | None = None) -> asyncio.Transport:
        transport: asyncio.Transport = DepartureTransport(self, sock, protocol, waiter, extra, server)
        return transport

    def _make_ssl_transport(  # the stdlib's, with our transport under the TLS layer
        self, rawsock: socket.socket, protocol: asyncio.BaseProtocol, sslcontext: ssl.SSLContext,
        waiter: Any = None, *, server_side: bool = False, server_hostname: str | None = None,
        extra: dict[str, Any] | None = None, server: asyncio.AbstractServer | None = None,
        ssl_handshake_timeout: Any = constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout: Any = constants.SSL_SHUTDOWN_TIMEOUT,
    ) -> asyncio.Transport:
        ssl_protocol = sslproto.SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout, ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        DepartureTransport(self, rawsock, ssl_protocol, extra=extra, server=server)
        app_transport: asyncio.Transport = ssl_protocol._app_transport
        return app_transport
