"""A small keep-alive HTTP/1.1 client for callbacks: one asyncio Protocol per pooled connection.

A general client (aiohttp's) costs ~200 µs of Python per request; a carrier sending thousands of
callbacks a second needs far less, and its requests are all alike: a small body, a status back, the
response body discarded. http:// only; https URLs go through aiohttp (see callbacks.py)."""

from __future__ import annotations

import asyncio
import functools
import re
from collections import deque
from urllib.parse import quote_plus, urlsplit


class HttpError(Exception):
    """The request got no complete response (connection refused/reset, bad response, timeout)."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.status = 0
        self.need: int | None = None      # bytes of the whole response once the head is parsed
        self.until_close = False
        self.keep_alive = True
        self.open = False
        self.got_bytes = False
        self.head_end = 0
        self.body = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.open = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self.until_close and self.status:
                waiter.set_result(self.status)
            else:
                waiter.set_exception(HttpError(f"connection lost: {exc or 'closed by peer'}"))

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self.buffer += data
        if self.need is None and not self._parse_head():
            return
        if self.need is not None and len(self.buffer) >= self.need:
            self._finish()

    def _parse_head(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(self.buffer[:end]).split(b"\r\n")
        try:
            status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            self._fail("bad status line")
            return False
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and value.strip().lower() == b"close":
                self.keep_alive = False
        if 100 <= status < 200:  # an interim response: drop it and wait for the real one
            del self.buffer[:end + 4]
            return self._parse_head() if self.buffer else False
        self.status = status
        self.head_end = end + 4
        if status in (204, 304):  # never a body (RFC 9110), with or without Content-Length
            self.need = end + 4
        elif chunked:
            self.keep_alive = False  # rare for callback receivers: read it by closing after the head
            self.need = end + 4
        elif length is not None:
            self.need = end + 4 + length
        else:
            self.keep_alive = False
            self.until_close = True
            return False
        return True

    def _finish(self) -> None:
        self.body = bytes(self.buffer[self.head_end:self.need])
        self.buffer.clear()
        self.need = None
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(self.status)

    def _fail(self, message: str) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(HttpError(message))
        self.close()

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()

    def start(self, payload: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[int]:
        self.waiter = loop.create_future()
        self.buffer.clear()
        self.status, self.need, self.until_close, self.got_bytes, self.body = 0, None, False, False, b""
        assert self.transport is not None
        self.transport.write(payload)
        return self.waiter


class HttpPool:
    """Pooled keep-alive connections per (host, port)."""

    def __init__(self, max_idle_per_host: int = 256) -> None:
        self.idle: dict[tuple[str, int], deque[_Connection]] = {}
        self.max_idle = max_idle_per_host
        self.targets: dict[str, tuple[str, int, str, str]] = {}

    def _target(self, url: str) -> tuple[str, int, str, str]:
        target = self.targets.get(url)
        if target is None:
            parts = urlsplit(url)
            host = parts.hostname or "127.0.0.1"
            port = parts.port or 80
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            target = (host, port, path, parts.netloc)
            if len(self.targets) < 10000:
                self.targets[url] = target
        return target

    async def request(self, method: str, url: str, body: bytes | None, headers: dict[str, str],
                      timeout: float) -> int:
        """Send one request and return the status; raise HttpError or TimeoutError."""
        return (await self.request_full(method, url, body, headers, timeout))[0]

    async def request_full(self, method: str, url: str, body: bytes | None, headers: dict[str, str],
                           timeout: float) -> tuple[int, bytes]:
        """Send one request and return the status and the body (empty unless Content-Length)."""
        host, port, path, netloc = self._target(url)
        head = [f"{method} {path} HTTP/1.1\r\nHost: {netloc}\r\n"]
        head.extend(f"{k}: {v}\r\n" for k, v in headers.items())
        data = body or b""
        head.append(f"Content-Length: {len(data)}\r\n\r\n")
        payload = "".join(head).encode("latin-1") + data
        loop = asyncio.get_running_loop()
        key = (host, port)
        async with asyncio.timeout(timeout):
            pool = self.idle.get(key)
            while pool:
                conn = pool.pop()
                if not conn.open:
                    continue
                try:
                    return await self._exchange(conn, payload, loop, key)
                except HttpError:
                    if conn.got_bytes:
                        raise
                    # a stale keep-alive connection the peer had closed: try a fresh one
            _, conn = await loop.create_connection(_Connection, host, port)
            return await self._exchange(conn, payload, loop, key)

    async def _exchange(self, conn: _Connection, payload: bytes, loop: asyncio.AbstractEventLoop,
                        key: tuple[str, int]) -> tuple[int, bytes]:
        try:
            status = await conn.start(payload, loop)
        except BaseException:
            conn.close()
            raise
        result = (status, conn.body)
        if conn.keep_alive and conn.open:
            pool = self.idle.setdefault(key, deque())
            if len(pool) < self.max_idle:
                pool.append(conn)
                return result
        conn.close()
        return result

    def close(self) -> None:
        for pool in self.idle.values():
            for conn in pool:
                conn.close()
        self.idle.clear()


_SAFE = re.compile(r"^[A-Za-z0-9_.\-~]*$")
_quote = functools.lru_cache(maxsize=65536)(quote_plus)  # callback values repeat a lot


def form_encode(fields: dict[str, str]) -> str:
    """application/x-www-form-urlencoded, quoting only the values that need it (urlencode quotes all)."""
    return "&".join(
        f"{k}={v if _SAFE.match(v) else _quote(v)}" for k, v in fields.items()
    )
