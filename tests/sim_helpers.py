"""Run the carrier simulator as a real subprocess for tests, and receive its callbacks.

    with start_simulator(config, speed=50, seed=3) as sim:
        httpx.post(f"{sim.base_url}/v1/Account/{auth_id}/Call/", ...)
        sim.wait_idle()
        assert sim.stats()["accounts"][auth_id]["max_in_1s_window"] <= cps

    with CallbackSink() as sink:           # a threaded HTTP server on 127.0.0.1
        url = sink.url("/hangup")
        ...
        sink.wait_for(lambda reqs: len(reqs) >= 3)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from simulator.process import RunningSimulator, start_simulator
from tests.polling import wait_for

__all__ = ["CallbackSink", "ReceivedCallback", "RunningSimulator", "start_simulator"]


@dataclass
class ReceivedCallback:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]   # lower-case names
    body: bytes
    at: float

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class CallbackSink:
    """A threaded HTTP server recording every request; `statuses[path]` lists answers to give in turn."""

    requests: list[ReceivedCallback] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                with sink.lock:
                    sink.requests.append(ReceivedCallback(
                        self.command, parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)),
                        {k.lower(): v for k, v in self.headers.items()}, body, time.time()))
                    queue = sink.statuses.get(parts.path)
                    status = queue.pop(0) if queue else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _record

            def log_message(self, *args: Any) -> None:
                pass

        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def snapshot(self) -> list[ReceivedCallback]:
        with self.lock:
            return list(self.requests)

    def wait_for(self, predicate: Callable[[list[ReceivedCallback]], bool], timeout: float = 10.0,
                 ) -> list[ReceivedCallback]:
        def expected() -> tuple[list[ReceivedCallback]] | None:
            got = self.snapshot()
            return (got,) if predicate(got) else None  # a tuple: an expected empty list still counts

        return wait_for(expected, timeout, "the expected callbacks", interval=0.02)[0]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> CallbackSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
