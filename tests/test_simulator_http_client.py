"""The simulator's callback client reads a 204 (Bandwidth's acknowledgement) as complete at once, on a
keep-alive connection, instead of waiting for a body that never comes and timing out."""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from simulator.http_client import HttpPool


class NoContent(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_204_without_content_length_completes_and_the_connection_is_reused() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NoContent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hangup"

    async def two_requests() -> list[tuple[int, float]]:
        pool = HttpPool()
        answers = []
        for _ in range(2):
            started = time.monotonic()
            headers = {"Content-Type": "application/json"}
            status, body = await pool.request_full("POST", url, b"{}", headers, 3.0)
            answers.append((status, time.monotonic() - started))
            assert body == b""
        pool.close()
        return answers

    try:
        answers = asyncio.run(two_requests())
    finally:
        server.shutdown()
    assert [status for status, _ in answers] == [204, 204]
    assert all(seconds < 1.0 for _, seconds in answers), answers
