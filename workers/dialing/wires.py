"""How the timed sender's requests reach the carrier: aiohttp in workers, any httpx transport in narrow tests.

A wire takes a built httpx.Request (adapters build requests with httpx, and read httpx responses) and the
request's Departure (workers.dialing.departures): it runs `departure.check()` once a connection is in hand
and nothing is written yet (it may raise SendTooLate to send nothing), then arms the departure, so that the
sender loop's transport checks again just before the first byte's send(2) and counts the send gone once the
kernel holds it; `departure.settle()` when the answer is in counts gone a request no transport stamped. It
answers an httpx.Response read in full, or raises an httpx.TransportError whose kind says whether anything
left: ConnectError / ConnectTimeout / PoolTimeout when nothing did (the carrier cannot have placed a call),
ReadError / ReadTimeout / RemoteProtocolError when the request may have arrived
(workers.providers.http.sent_once maps these to Transient and Ambiguous).

Why aiohttp: the sender is the dialer's hottest Python code. httpx's async stack (httpcore on anyio) cost
about 1.1 ms of CPU per request on this 2-core machine, and aiohttp (C parser, plain asyncio) about
0.12 ms with the same keep-alive pool and tracing hooks (`python -m bench http-client`; bench/RESULTS.md,
"The lean dial path").
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Protocol

import aiohttp
import httpx

from workers.dialing.departures import Departure

# Headers aiohttp writes itself from the request it is given; passing httpx's copies would send them twice.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class Wire(Protocol):
    async def warm_up(self) -> None: ...

    async def send(self, request: httpx.Request, departure: Departure) -> httpx.Response: ...

    async def aclose(self) -> None: ...


class HttpxWire:
    """Any httpx async transport (httpx.MockTransport in unit tests); the connection is in hand when httpcore
    starts writing the request's head, after any wait for a connection (which is the send's too)."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def warm_up(self) -> None:
        return None

    async def send(self, request: httpx.Request, departure: Departure) -> httpx.Response:
        async def trace(event: str, info: dict[str, object]) -> None:
            if event == "http11.send_request_headers.started" and not departure.armed:
                departure.check()  # refusing here sends nothing (the connection is then dropped)
                departure.arm()

        request.extensions = {**request.extensions, "trace": trace}
        response = await self._transport.handle_async_request(request)
        if not departure.armed:  # a transport without httpcore's trace (a mock): it went as handed over
            departure.before_write()
        departure.settle()
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        return httpx.Response(response.status_code, headers=response.headers, content=body,
                              extensions=response.extensions)

    async def aclose(self) -> None:
        await self._transport.aclose()


def _client_timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    """The httpx client's timeouts, which it put on the request, as aiohttp's."""
    t: dict[str, float | None] = request.extensions.get("timeout", {})
    return aiohttp.ClientTimeout(total=None, connect=t.get("pool"), sock_connect=t.get("connect"),
                                 sock_read=t.get("read"))


class AiohttpWire:
    """aiohttp's keep-alive client. Its session is made on the sender's loop at the first send."""

    def __init__(self, max_connections: int, keepalive_s: float) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    async def warm_up(self) -> None:
        """Open the session now, on the sender's loop, not at the first booked instant."""
        if self._session is None:
            self._session = self._open()

    def _open(self) -> aiohttp.ClientSession:
        trace = aiohttp.TraceConfig()
        trace.on_connection_reuseconn.append(_connection_in_hand)
        trace.on_connection_create_end.append(_connection_in_hand)
        connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=self._keepalive_s)
        # Bodies are handed to httpx as they came (httpx decodes them by their Content-Encoding).
        return aiohttp.ClientSession(connector=connector, trace_configs=[trace], auto_decompress=False,
                                     skip_auto_headers=("User-Agent", "Accept-Encoding"))

    async def send(self, request: httpx.Request, departure: Departure) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _OWN_HEADERS]
        try:
            async with self._session.request(
                request.method, str(request.url), headers=headers, data=request.read() or None,
                allow_redirects=False, timeout=_client_timeout(request), trace_request_ctx=departure,
            ) as answer:
                departure.settle()
                body = await answer.read()
                raw_headers = [(k, v) for k, v in answer.raw_headers]
                status = answer.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if departure.refusal is not None:  # refused at the write (aiohttp wraps what it raised)
                raise departure.refusal from None
            if departure.written:
                departure.settle()  # it may have arrived: counted gone, at the latest, now
            raise _as_httpx_error(exc, request, sent=departure.written) from exc
        return httpx.Response(status, headers=raw_headers, content=body)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _connection_in_hand(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
    # A connection taken from the pool is given back if this raises; a new one is dropped with the request.
    departure: Departure = ctx.trace_request_ctx
    departure.check()
    departure.arm()  # from here the connection's next write is this request's (a TLS handshake is done)


def _as_httpx_error(exc: BaseException, request: httpx.Request, *, sent: bool) -> httpx.TransportError:
    """The httpx error that says the same: whether the request may have reached the carrier, and how."""
    timed_out = isinstance(exc, TimeoutError)  # aiohttp's timeouts are TimeoutError subclasses
    message = f"{type(exc).__name__}: {exc}"
    if not sent:
        return (httpx.ConnectTimeout if timed_out else httpx.ConnectError)(message, request=request)
    if timed_out:
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(message, request=request)
    return httpx.ReadError(message, request=request)
