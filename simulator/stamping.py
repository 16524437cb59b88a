"""Arrival instants from the kernel: when the bytes of a request reached this host, not when the
simulator's process got the CPU to handle them.

A real carrier counts arrivals at its edge, on hardware the dialer's load does not touch. The simulator
shares a small host with the dialer; when that host is saturated its process waits for CPU, and requests
that reached its socket meanwhile would be stamped at the resume instant, compressed together, and
refused as a burst that was never sent. On Linux a TCP socket with SO_TIMESTAMPNS reports, with each read
(recvmsg), the CLOCK_REALTIME instant the last segment read was received; this module runs the server on
the standard asyncio loop with a socket transport that reads that way and keeps the instant as the
transport's extra info `RX_TIME`, for the handler to count the request at. uvloop cannot do this (its
transports read with recv), so kernel stamps mean the stdlib loop.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time
from asyncio import selector_events
from typing import Any

# Linux's value; Python's socket module does not name it. The control message has the same number.
SO_TIMESTAMPNS = int(getattr(socket, "SO_TIMESTAMPNS", 35))
RX_TIME = "kernel_rx_time"  # transport extra info: epoch seconds the last bytes read reached the host
_TIMESPEC = struct.Struct("qq")  # struct timespec on 64-bit Linux: seconds, nanoseconds


def supported() -> bool:
    """Whether this platform gives TCP sockets kernel receive stamps (Linux with recvmsg)."""
    if not sys.platform.startswith("linux") or not hasattr(socket.socket, "recvmsg"):
        return False
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            enable(probe)
    except OSError:
        return False
    return True


def enable(sock: socket.socket) -> None:
    """Ask the kernel to stamp what this socket receives (sockets accepted from it inherit the option)."""
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


_SocketTransport: Any = selector_events._SelectorSocketTransport  # type: ignore[attr-defined]
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


class StampingTransport(_SocketTransport):  # type: ignore[misc]
    """The stdlib socket transport, reading with recvmsg to keep each read's kernel receive instant.

    The instant is stored before the protocol sees the bytes, so a handler reading it once its request's
    body is in (no await in between) gets the instant its request's last bytes arrived: HTTP/1.1 clients
    send the next request on a connection only after the answer to this one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        try:
            enable(self._sock)
        except OSError:
            pass  # no stamps on this socket: its handler falls back to its own clock
        self._extra[RX_TIME] = None

    def _read_ready__data_received(self) -> None:  # mirrors the stdlib's, recv -> recvmsg
        if self._conn_lost:
            return
        try:
            data, ancillary, _flags, _addr = self._sock.recvmsg(self.max_size, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not data:
            self._read_ready__on_eof()
            return
        stamp = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
                seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
                stamp = seconds + nanoseconds * 1e-9
        self._extra[RX_TIME] = stamp
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")


class StampingEventLoop(asyncio.SelectorEventLoop):
    """The stdlib selector loop whose accepted TCP sockets use StampingTransport (the connections the
    simulator opens itself, to deliver callbacks, read as usual)."""

    def _make_socket_transport(self, sock: socket.socket, protocol: asyncio.BaseProtocol,
                               waiter: asyncio.Future[Any] | None = None, *,
                               extra: dict[str, Any] | None = None,
                               server: asyncio.AbstractServer | None = None) -> asyncio.Transport:
        if server is None:
            plain: asyncio.Transport = super()._make_socket_transport(  # type: ignore[misc]
                sock, protocol, waiter, extra=extra, server=server)
            return plain
        transport: asyncio.Transport = StampingTransport(self, sock, protocol, waiter, extra, server)
        return transport


def received_at(transport: asyncio.BaseTransport | None, now: float) -> float | None:
    """The monotonic instant (on the clock of `now`, a time.monotonic() reading) the last bytes read on
    `transport` reached the host, or None without a kernel stamp. Never later than `now`: a realtime
    clock stepped meanwhile must not put an arrival in the future."""
    if transport is None:
        return None
    stamp = transport.get_extra_info(RX_TIME)
    if stamp is None:
        return None
    return min(now, now - (time.time() - float(stamp)))
