"""The timed sender's HTTP client, chosen by measurement (issue 18): CPU per create request of httpx's async
transport (what the sender used) against aiohttp (what it uses now, with the same tracing hooks), each
over a keep-alive pool, 8 requests in flight, against a minimal HTTP/1.1 server in another process that
answers every request with a Plivo-shaped 201 (so only the client's cost is measured).

    python -m bench.http_client_bench            # 3,000 requests per client, each client twice, alternating

Prints the client process's CPU time per request (time.process_time) and the wall time of each run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx

BODY = json.dumps({"from": "+14155550100", "to": "+14155550101", "answer_url": "http://127.0.0.1/a"}).encode()
HEADERS = {"content-type": "application/json", "authorization": "Basic eHg6eXk="}
IN_FLIGHT = 8

SERVER = r'''
import asyncio, sys
BODY = b'{"api_id":"x","message":"call fired","request_uuid":"8f3b1a2c-0000-4000-8000-000000000000"}'
HEAD = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
ANSWER = HEAD % len(BODY) + BODY
class Answer(asyncio.Protocol):
    def connection_made(self, transport): self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = next((int(line.split(b":")[1]) for line in self.buffer[:end].lower().split(b"\r\n")
                           if line.startswith(b"content-length:")), 0)
            if len(self.buffer) < end + 4 + length: return
            self.buffer = self.buffer[end + 4 + length:]
            self.transport.write(ANSWER)
async def main():
    server = await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
'''

Send = Callable[[], Awaitable[int]]


async def httpx_client(url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    transport = httpx.AsyncHTTPTransport(limits=limits)

    async def trace(event: str, info: dict[str, Any]) -> None:
        return None

    async def send() -> int:
        request = httpx.Request("POST", url, headers=HEADERS, content=BODY, extensions={"trace": trace})
        response = await transport.handle_async_request(request)
        await response.aread()
        await response.aclose()
        return response.status_code

    return send, transport.aclose


async def aiohttp_client(url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    trace = aiohttp.TraceConfig()

    async def hook(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
        ctx.trace_request_ctx.seen = True

    trace.on_connection_reuseconn.append(hook)
    trace.on_connection_create_end.append(hook)
    trace.on_request_headers_sent.append(hook)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64), trace_configs=[trace],
                                    auto_decompress=False)

    async def send() -> int:
        async with session.post(url, data=BODY, headers=HEADERS, trace_request_ctx=SimpleNamespace()) as r:
            await r.read()
            return r.status

    return send, session.close


async def measure(name: str, url: str, requests: int) -> dict[str, Any]:
    send, close = await (httpx_client if name == "httpx" else aiohttp_client)(url)
    for _ in range(50):  # warm the pool
        await send()
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one() -> int:
        async with gate:
            return await send()

    cpu, wall = time.process_time(), time.perf_counter()
    statuses = set(await asyncio.gather(*(one() for _ in range(requests))))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await close()
    assert statuses == {201}, statuses
    return {"client": name, "cpu_us_per_request": round(cpu / requests * 1e6), "wall_s": round(wall, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args(argv)
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1/Account/MA/Call/"
        for name in ("httpx", "aiohttp", "httpx", "aiohttp"):
            print(json.dumps(asyncio.run(measure(name, url, args.requests))))
    finally:
        server.terminate()
        server.wait(timeout=5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
