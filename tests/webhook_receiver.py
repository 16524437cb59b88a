"""A real webhook receiver for the tests: a threaded HTTP server on 127.0.0.1 that records every request it
reads (headers, body, when, what it answered) and answers as its `plan` says, request by request. It can
be taken down (the port refuses connections) and brought up again on the same port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

from workers.entrypoints.local_stack import free_port


@dataclass(frozen=True)
class Answer:
    """How to answer one request: wait `delay_s`, then answer `status`."""

    status: int = 204
    delay_s: float = 0.0


@dataclass
class Received:
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # monotonic, when read
    answered: int  # the status it was answered (or would have been, had the sender waited)
    answered_at: float = 0.0  # monotonic, just before the answer was written

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


ALWAYS_OK: Callable[[int], Answer] = lambda n: Answer()  # noqa: E731


class Receiver:
    """`plan(n)` answers the n-th request (0-based) read since the receiver was made."""

    def __init__(self, plan: Callable[[int], Answer] = ALWAYS_OK) -> None:
        self.port = free_port()
        self.plan = plan
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    answer = receiver.plan(len(receiver.received))
                    entry = Received({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic(),
                                     answer.status)
                    receiver.received.append(entry)
                time.sleep(answer.delay_s)
                entry.answered_at = time.monotonic()  # before the answer leaves: no sender can know it sooner
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

    def down(self) -> None:
        """Stop listening: a POST now meets a refused connection."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every request's event, each checked by standardwebhooks' Webhook.verify (raises if one fails)."""
        hook = Webhook(secret)
        return [dict(hook.verify(r.body, r.headers)) for r in self.snapshot()]

    def __enter__(self) -> Receiver:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()
