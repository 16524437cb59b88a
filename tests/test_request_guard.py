"""Nothing is read before it is authorised, and every body has a cap and a deadline (issue 20 items 2 and 11):
the request guard's rules as a table, its effect on the real app in process (counting the body bytes the app
pulls), and a real uvicorn server against a client that drips its body."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from campaigns.accounts import add_account
from campaigns.api_keys import create_api_key
from campaigns.config import get_settings
from tests.results_helpers import signed_url
from workers.entrypoints.api.request_guard import RequestGuard
from workers.entrypoints.api.request_rules import BodyRule, declared_over, read_deadline, rule_for
from workers.entrypoints.local_stack import free_port, wait_http

pytestmark = pytest.mark.timeout(180)
REPO = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
SERVER_READ_TIMEOUT_S = 2  # the deadline of the server the slow-client tests start
MULTIPART = "multipart/form-data; boundary=b"


# --- the rules ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "needs_key", "cap_setting", "grows"), [
    ("POST", "/callbacks/tryvox/1/hangup", False, "DIALER_MAX_CALLBACK_BYTES", False),
    ("GET", "/health", False, "DIALER_MAX_JSON_BYTES", False),
    ("GET", "/health/ready", False, "DIALER_MAX_JSON_BYTES", False),
    ("GET", "/metrics", False, "DIALER_MAX_JSON_BYTES", False),
    ("GET", "/docs/oauth2-redirect", False, "DIALER_MAX_JSON_BYTES", False),
    ("GET", "/openapi.json", False, "DIALER_MAX_JSON_BYTES", False),
    ("POST", "/ui/login", False, "DIALER_MAX_JSON_BYTES", False),
    ("POST", "/ui/campaigns/new", False, "DIALER_MAX_UPLOAD_BYTES", True),  # the console checks its session
    ("POST", "/ui/dnc/import", False, "DIALER_MAX_UPLOAD_BYTES", True),
    ("GET", "/healthz", True, "DIALER_MAX_JSON_BYTES", False),  # a prefix matches whole segments only
    ("POST", "/callbacksx/1", True, "DIALER_MAX_JSON_BYTES", False),
    ("POST", "/campaigns", True, "DIALER_MAX_UPLOAD_BYTES", True),
    ("POST", "/campaigns/", True, "DIALER_MAX_UPLOAD_BYTES", True),
    ("POST", "/dnc/import", True, "DIALER_MAX_UPLOAD_BYTES", True),
    ("GET", "/campaigns", True, "DIALER_MAX_JSON_BYTES", False),
    ("PATCH", "/campaigns/1", True, "DIALER_MAX_JSON_BYTES", False),
    ("POST", "/dnc", True, "DIALER_MAX_JSON_BYTES", False),
    ("GET", "/no-such-route", True, "DIALER_MAX_JSON_BYTES", False),
])
def test_each_route_has_its_key_rule_cap_and_deadline(method: str, path: str, needs_key: bool,
                                                       cap_setting: str, grows: bool) -> None:
    settings = get_settings()
    rule = rule_for(method, path, settings)
    grows_with_bytes = rule.min_bytes_per_s is not None
    assert (rule.needs_api_key, rule.cap_setting, grows_with_bytes) == (needs_key, cap_setting, grows)
    expected_cap = {"DIALER_MAX_CALLBACK_BYTES": None, "DIALER_MAX_JSON_BYTES": settings.max_json_bytes,
                    "DIALER_MAX_UPLOAD_BYTES": settings.max_upload_bytes}[cap_setting]
    assert rule.cap == expected_cap


def test_an_uploads_deadline_grows_with_what_arrived_and_others_do_not() -> None:
    upload = BodyRule(needs_api_key=True, cap=10 * MB, cap_setting="X", min_bytes_per_s=1000)
    json_body = BodyRule(needs_api_key=True, cap=65536, cap_setting="X", min_bytes_per_s=None)
    assert read_deadline(100.0, 0, upload, 10) == 110.0
    assert read_deadline(100.0, 5000, upload, 10) == 115.0
    assert read_deadline(100.0, 5000, json_body, 10) == 110.0
    assert [declared_over(v, 100) for v in (None, "100", "101", "-1", "1e3", " 5")] == [
        False, False, True, True, True, True]
    assert declared_over("999999", None) is False  # the route caps itself


# --- in process: the bytes the app pulls -------------------------------------------------------------------

def _call(client: TestClient, method: str, path: str, headers: dict[str, str], body: bytes, *,
          chunk: int = 65536, declare_length: bool = True) -> tuple[int, dict[str, str], dict[str, Any], int]:
    """One request straight into the app's ASGI interface; (status, headers, JSON body, body bytes pulled)."""
    pulled = 0
    chunks = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
    sent: list[dict[str, Any]] = []
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if declare_length:
        raw.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": raw, "client": ("127.0.0.1", 50000), "server": ("testserver", 80), "state": {}}

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if not chunks:
            return {"type": "http.disconnect"}
        part = chunks.pop(0)
        pulled += len(part)
        return {"type": "http.request", "body": part, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        await client.app(scope, receive, send)  # type: ignore[arg-type]

    client.portal.call(run)  # type: ignore[union-attr]  # the app's own event loop (its pool lives there)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    answer_headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], answer_headers, json.loads(body_out or b"{}"), pulled


def _multipart(size: int) -> bytes:
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\nphone\n'
    return head + b"+14155552671\n" * ((size - len(head)) // 13) + b"\r\n--b--\r\n"


def test_a_20_mb_dnc_import_without_a_key_is_a_401_having_read_nothing(client: TestClient) -> None:
    status, headers, body, pulled = _call(client, "POST", "/dnc/import", {"Content-Type": MULTIPART},
                                          _multipart(20 * MB))
    assert (status, body["error"], headers["www-authenticate"], pulled) == (401, "unauthorized", "Bearer", 0)
    assert headers["connection"] == "close"  # the server reads none of the rest either


@pytest.mark.parametrize("path", ["/campaigns", "/dnc/import"])
def test_a_viewers_upload_is_a_403_having_read_nothing(client: TestClient, database_url: str,
                                                       path: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        account = add_account(conn, name=f"guard-viewer-{uuid.uuid4().hex[:6]}", provider="plivo",
                              auth_id="MAGUARD", auth_token="guard-token", cps=5, max_concurrent=5,
                              base_url="http://127.0.0.1:9")
        key = create_api_key(conn, name="guard-viewer", role="viewer", accounts=[account]).key
    headers = {"Content-Type": MULTIPART, "Authorization": f"Bearer {key}"}
    status, _, body, pulled = _call(client, "POST", path, headers, _multipart(2 * MB))
    assert (status, body["error"], pulled) == (403, "forbidden", 0)
    assert "viewer" in body["message"]


@pytest.mark.parametrize("key", [None, "not-a-key"])
def test_a_10_mb_json_without_a_valid_key_is_a_401_having_read_nothing(client: TestClient,
                                                                       key: str | None) -> None:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    body = b'{"name": "' + b"x" * (10 * MB) + b'"}'
    status, _, answer, pulled = _call(client, "PATCH", "/campaigns/1", headers, body, declare_length=False)
    assert (status, answer["error"], pulled) == (401, "unauthorized", 0)


def test_invalid_json_without_a_key_is_a_401_not_a_422(client: TestClient) -> None:
    response = client.patch("/campaigns/1", content=b"{not json",
                            headers={"Content-Type": "application/json"})
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_json_over_its_cap_is_a_413_declared_or_streamed(client: TestClient, auth: dict[str, str]) -> None:
    cap = get_settings().max_json_bytes
    body = b'{"name": "' + b"x" * cap + b'"}'
    headers = {**auth, "Content-Type": "application/json"}
    status, answer_headers, answer, pulled = _call(client, "PATCH", "/campaigns/1", headers, body)
    assert (status, answer["error"], pulled) == (413, "too_large", 0)
    assert "DIALER_MAX_JSON_BYTES" in answer["message"] and answer_headers["connection"] == "close"
    status, _, answer, pulled = _call(client, "PATCH", "/campaigns/1", headers, body * 100, chunk=4096,
                                      declare_length=False)  # chunked: counted while it streams
    assert (status, answer["error"]) == (413, "too_large")
    assert cap < pulled <= cap + 4096  # refused at the first chunk past the cap; the rest never pulled


def test_a_dnc_import_over_the_upload_cap_is_a_413_declared_or_streamed(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(get_settings(), "max_upload_bytes", MB)
    headers = {**auth, "Content-Type": MULTIPART}
    status, _, answer, pulled = _call(client, "POST", "/dnc/import", headers, _multipart(20 * MB))
    assert (status, answer["error"], pulled) == (413, "too_large", 0)
    assert "DIALER_MAX_UPLOAD_BYTES" in answer["message"]
    status, _, answer, pulled = _call(client, "POST", "/dnc/import", headers, _multipart(20 * MB),
                                      declare_length=False)
    assert (status, answer["error"]) == (413, "too_large")
    assert MB < pulled <= MB + 65536
    # A number no other test dials: the global list is shared by every module of the session.
    small = client.post("/dnc/import", headers=auth, files={"file": ("a.csv", b"phone\n+14155550199\n")})
    assert small.status_code == 200, small.text  # under the cap it still imports
    assert client.delete("/dnc/+14155550199", headers=auth).status_code == 200


def test_the_guard_hands_the_verified_key_to_the_route(client: TestClient, auth: dict[str, str]) -> None:
    seen: dict[str, Any] = {}

    async def route(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope["state"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guarded = RequestGuard(route)
    scope = {"type": "http", "method": "GET", "path": "/campaigns", "headers": [
        (b"authorization", auth["Authorization"].encode())], "app": client.app, "state": {}}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    async def run() -> None:
        await guarded(scope, receive, send)

    client.portal.call(run)  # type: ignore[union-attr]
    assert seen["api_key"].name == "api-tests"


# --- a real server, a real slow client ---------------------------------------------------------------------

@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request: pytest.FixtureRequest, database_url: str) -> Iterator[str]:
    """`uvicorn workers.entrypoints.api.main:app` with a 2 s body read deadline, on the HTTP parser
    `dialer api` uses (httptools) and on uvicorn's other one."""
    port = free_port()
    env = {**os.environ, "DIALER_PUBLIC_URL": f"http://127.0.0.1:{port}",
           "DIALER_BODY_READ_TIMEOUT_S": str(SERVER_READ_TIMEOUT_S)}
    argv = [sys.executable, "-m", "uvicorn", "workers.entrypoints.api.main:app", "--host", "127.0.0.1",
            "--port", str(port), "--http", request.param, "--log-level", "warning"]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _connect(server: str) -> socket.socket:
    host, port = server.split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset after its answer ends it too)."""
    data = b""
    sock.settimeout(10)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def _status_and_body(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body or b"{}")


def _drip(server: str, head: str, bound_s: float = 60) -> tuple[bytes, int]:
    """Send `head`, then one body byte a second until the server answers; (its answer, bytes dripped)."""
    sock = _connect(server)
    sock.sendall(head.encode())
    dripped = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < bound_s:
            readable, _, _ = select.select([sock], [], [], 1.0)
            if readable:
                return _read_answer(sock), dripped
            sock.sendall(b"x")
            dripped += 1
        return b"", dripped
    except (BrokenPipeError, ConnectionResetError):
        return _read_answer(sock), dripped
    finally:
        sock.close()


def test_a_dripped_body_to_an_operator_route_is_cut_off_at_the_deadline(server: str,
                                                                         auth: dict[str, str]) -> None:
    head = (f"PATCH /campaigns/1 HTTP/1.1\r\nHost: {server}\r\nAuthorization: {auth['Authorization']}\r\n"
            "Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n")
    answer, dripped = _drip(server, head)
    assert answer, f"still open after {dripped} bytes, one a second"
    status, body = _status_and_body(answer)
    assert (status, body["error"]) == (408, "request_timeout")
    assert dripped < 30  # the deadline is 2 s; generous for a busy machine


def test_a_dripped_callback_body_is_cut_off_at_the_deadline(server: str, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        account_id = add_account(conn, name=f"drip-{uuid.uuid4().hex[:6]}", provider="tryvox",
                                 auth_id="ADRIP", auth_token="drip-token", cps=1, max_concurrent=1,
                                 base_url="http://127.0.0.1:9")
        conn.commit()
    path = signed_url("", "tryvox", account_id, "hangup")
    head = (f"POST {path} HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/json\r\n"
            "Content-Length: 60000\r\n\r\n")
    answer, dripped = _drip(server, head)
    assert answer, f"still open after {dripped} bytes, one a second"
    assert _status_and_body(answer)[0] == 408
    assert dripped < 30


def test_a_keyless_20_mb_upload_is_answered_before_its_body_and_the_rest_is_refused(server: str) -> None:
    body = _multipart(20 * MB)
    head = (f"POST /dnc/import HTTP/1.1\r\nHost: {server}\r\nContent-Type: {MULTIPART}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    sock = _connect(server)
    try:
        sock.sendall(head.encode())
        readable, _, _ = select.select([sock], [], [], 10)
        assert readable, "no answer before the body: the server waits to read it"
        status, answer = _status_and_body(_read_answer(sock))  # the server closes after its answer
        assert (status, answer["error"]) == (401, "unauthorized")
        sent = 0
        with pytest.raises(OSError):  # the closed connection takes none of the body
            for start in range(0, len(body), 65536):
                sock.sendall(body[start:start + 65536])
                sent += 65536
        assert sent < 4 * MB
    finally:
        sock.close()
