"""Simulator throughput: N call creations against a simulator subprocess, with their callbacks.

    python -m bench.simulator_bench --calls 20000 --concurrency 128

This process is the load: C concurrent creators on one keep-alive aiohttp client, and a callback sink
(aiohttp server on 127.0.0.1) counting what the simulator delivers. Reports creations/s, callbacks/s,
and p50/p99 of the create latency and of create-to-last-callback.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson

from simulator.http_client import HttpPool
from tests.sim_helpers import start_simulator

AUTH_ID, TOKEN = "MABENCH0000000000001", "bench-token"


def bench_config(cps: float) -> dict[str, Any]:
    return {
        "accounts": [{"provider": "plivo", "auth_id": AUTH_ID, "auth_token": TOKEN, "cps": cps,
                      "max_concurrent": 10**9}],
        "outcomes": {"answered": 80, "busy": 10, "no_answer": 0, "failed": 10, "machine": 0,
                     "ring_time": [1, 3], "talk_time": [5, 20]},
        "callbacks": {"attempts": 3, "backoff": 1.0, "timeout": 10.0},
    }


class SinkProtocol(asyncio.Protocol):
    """A bare HTTP/1.1 keep-alive receiver: answers 200 to each request and counts it; it costs the
    load process far less than a framework, so the figures measure the simulator."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) \
                if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4:end + 4 + length])
            del self.buffer[:end + 4 + length]
            self.sink.record(head.split(b" ", 2)[1], body)
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


class Sink:
    """Counts callbacks and remembers when each RequestUUID's hangup arrived."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self.hangups: dict[str, float] = {}

    def record(self, path: bytes, body: bytes) -> None:
        now = time.perf_counter()
        self.count += 1
        self.last = now
        if path == b"/hangup":
            at = body.find(b"RequestUUID=")
            self.hangups[body[at + 12:at + 48].decode()] = now


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(base_url: str, *, calls: int, concurrency: int, ring: bool) -> dict[str, Any]:
    sink = Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkProtocol(sink), "127.0.0.1", 0, backlog=4096)
    cb = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    url = f"{base_url}/v1/Account/{AUTH_ID}/Call/"
    headers = {"Authorization": "Basic " + base64.b64encode(f"{AUTH_ID}:{TOKEN}".encode()).decode(),
               "Content-Type": "application/json"}
    latencies: list[float] = []
    created: dict[str, float] = {}
    statuses: dict[int, int] = {}
    next_index = 0
    pool = HttpPool(max_idle_per_host=concurrency)

    async def creator() -> None:
        nonlocal next_index
        while next_index < calls:
            i = next_index
            next_index += 1
            body = {"from": "+12025550000", "to": f"+1303{i:07d}", "answer_url": f"{cb}/answer",
                    "hangup_url": f"{cb}/hangup"}
            if ring:
                body["ring_url"] = f"{cb}/ring"
            start = time.perf_counter()
            status, raw = await pool.request_full("POST", url, orjson.dumps(body), headers, 30.0)
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1
            if status == 201:
                created[orjson.loads(raw)["request_uuid"]] = start

    t0 = time.perf_counter()
    await asyncio.gather(*(creator() for _ in range(concurrency)))
    create_elapsed = time.perf_counter() - t0
    deadline = time.perf_counter() + 60
    while len(sink.hangups) < len(created) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    pool.close()
    server.close()
    total_elapsed = sink.last - t0
    to_hangup = [sink.hangups[k] - v for k, v in created.items() if k in sink.hangups]
    return {
        "calls": calls, "concurrency": concurrency, "statuses": statuses,
        "creations_per_s": round(len(created) / create_elapsed, 1),
        "create_p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "create_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "callbacks_received": sink.count, "hangups_received": len(sink.hangups),
        "callbacks_per_s": round(sink.count / total_elapsed, 1) if total_elapsed > 0 else 0.0,
        "create_to_hangup_p50_ms": round(percentile(to_hangup, 0.5) * 1000, 1),
        "create_to_hangup_p99_ms": round(percentile(to_hangup, 0.99) * 1000, 1),
        "elapsed_s": round(total_elapsed, 2),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.simulator_bench", description=__doc__)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--speed", type=float, default=1000.0, help="simulator time scale")
    parser.add_argument("--cps", type=float, default=100000.0, help="the account's CPS in the simulator")
    parser.add_argument("--ring", action="store_true", help="also ask for ring callbacks (3 per call)")
    args = parser.parse_args(argv)
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    with start_simulator(bench_config(args.cps), speed=args.speed, seed=1) as sim:
        result = runner(drive(sim.base_url, calls=args.calls, concurrency=args.concurrency, ring=args.ring))
        sim_stats = sim.wait_idle(timeout=60)
    result["simulator_callbacks"] = sim_stats["callbacks"]
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
