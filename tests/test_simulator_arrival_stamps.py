"""The carrier counts a create request's arrival when its bytes reach the host (the kernel's receive time),
not when its own starved process gets round to the handler: requests sent while the simulator is stopped
(SIGSTOP, as a CPU-starved process is) keep their send instants in the ledger, and the strict CPS window
still refuses the one send over the budget."""

from __future__ import annotations

import os
import random
import signal
import socket
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import orjson
import pytest

from simulator.limits import SlidingWindow, WindowMax
from tests.sim_helpers import RunningSimulator, start_simulator

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernel receive stamps: Linux")

CAP = 5
CONFIG = {
    "accounts": [
        {"provider": "tryvox", "auth_id": "stamp-acct", "auth_token": "k1", "cps": CAP,
         "max_concurrent": 1000},
    ],
    "outcomes": {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
                 "ring_time": [1, 1], "talk_time": [1, 1]},
    "limiter": {"kind": "sliding_window", "arrival_jitter_ms": {"mean": 0, "spread": 0}},
}
STOPPED_FOR = 0.3   # seconds the simulator is stopped
SPACING = 0.04      # seconds between the sends made meanwhile
TOLERANCE = 0.005   # how far a ledger stamp may sit from its send (loopback: microseconds in practice)


@pytest.fixture()
def sim() -> Iterator[RunningSimulator]:
    with start_simulator(CONFIG, speed=20, seed=5) as sim:
        yield sim


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length: (status, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the response headers"
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the response body"
        body += chunk
    return int(lines[0].split()[1]), body[:length]


def _request(method: str, path: str, host: str, body: bytes = b"", headers: str = "") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
            .encode() + body)


def _connections(sim: RunningSimulator, n: int) -> list[socket.socket]:
    """n keep-alive connections the simulator has accepted and answered on (a health check on each)."""
    url = urlsplit(sim.base_url)
    assert url.hostname is not None and url.port is not None
    conns = []
    for _ in range(n):
        sock = socket.create_connection((url.hostname, url.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(_request("GET", "/_sim/health", url.netloc))
        status, _ = _read_response(sock)
        assert status == 200
        conns.append(sock)
    return conns


def test_arrivals_keep_their_send_instants_while_the_carrier_is_stopped(sim: RunningSimulator) -> None:
    health = sim.client.get("/_sim/health").json()
    assert health["arrival_stamp"] == "kernel"
    host = urlsplit(sim.base_url).netloc
    sends = CAP + 1  # one over the budget, all within one second
    conns = _connections(sim, sends)
    sent: dict[str, tuple[float, float]] = {}  # destination -> (just before the send, just after)
    os.kill(sim.process.pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        for i, sock in enumerate(conns):
            to = f"+1415555{1000 + i:04d}"
            body = orjson.dumps({"from": "+14155550000", "to": to, "answer_url": "http://127.0.0.1:9/a"})
            request = _request("POST", "/v1/voice/accounts/stamp-acct/calls", host, body,
                               "Authorization: Bearer k1\r\nContent-Type: application/json\r\n")
            before = time.time()
            sock.sendall(request)
            sent[to] = (before, time.time())
            time.sleep(SPACING)
        time.sleep(max(0.0, STOPPED_FOR - (time.monotonic() - stopped_at)))
    finally:
        os.kill(sim.process.pid, signal.SIGCONT)
    resumed_at = time.time()
    statuses = sorted(_read_response(sock)[0] for sock in conns)
    for sock in conns:
        sock.close()

    # The strict window still holds: cap + 1 sends inside one second, exactly one refused.
    assert statuses == [201] * CAP + [429], statuses
    stats = sim.stats()
    account = stats["accounts"]["stamp-acct"]
    assert account["max_in_1s_window"] == CAP
    assert stats["arrivals"] == {"mode": "kernel", "kernel": sends, "handler": 0}

    calls = sim.ledger()["calls"]
    assert len(calls) == CAP
    for call in calls:
        before, after = sent[call["destination"]]
        # Stamped when the bytes arrived, not compressed to the instant the process resumed.
        assert before - 0.001 <= call["received_at"] <= after + TOLERANCE, (
            call["destination"], call["received_at"] - before, resumed_at - before)
        assert call["arrival"] == "kernel"
    received = sorted(call["received_at"] for call in calls)
    assert received[-1] - received[0] >= (CAP - 2) * SPACING  # spread as sent, not bunched together


def test_network_jitter_is_added_to_the_kernel_stamp() -> None:
    config = {**CONFIG, "limiter": {"kind": "sliding_window", "arrival_jitter_ms": {"mean": 50, "spread": 0}}}
    with start_simulator(config, speed=20, seed=5) as sim:
        body = {"from": "+14155550000", "to": "+14155552000", "answer_url": "http://127.0.0.1:9/a"}
        sim.client.get("/_sim/health")  # the connection is open before the timed send
        before = time.time()
        response = sim.client.post("/v1/voice/accounts/stamp-acct/calls", json=body,
                                   headers={"Authorization": "Bearer k1"})
        answered = time.time()
        assert response.status_code == 201
        assert answered - before >= 0.05  # the request is judged only once it has "arrived"
        (call,) = sim.ledger()["calls"]
        assert call["arrival"] == "kernel"
        assert before + 0.05 - 0.001 <= call["received_at"] <= answered


def test_late_counted_arrivals_are_placed_at_their_own_instants_and_every_window_checked() -> None:
    """Handlers run out of stamp order after a stall: the window admits exactly what a carrier counting
    the same instants in time order would, and the ledger's measure finds the same busiest second."""

    def busiest(stamps: list[float]) -> int:
        stamps = sorted(stamps)
        best = lo = 0
        for hi, t in enumerate(stamps):
            while stamps[lo] <= t - 1.0:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    for seed in range(100):
        rng = random.Random(seed)
        cap = rng.randint(1, 8)
        window, measured = SlidingWindow(cap), WindowMax()
        admitted: list[float] = []
        clock = 0.0
        for _ in range(200):
            clock += rng.expovariate(cap * 1.5)
            at = round(clock - (rng.uniform(0, 0.6) if rng.random() < 0.4 else 0.0), 3)
            fits = busiest([*admitted, at]) <= cap
            assert (window.try_take(1, at) == 0.0) == fits, (seed, at)
            if fits:
                assert window.counted_at == at
                admitted.append(at)
                measured.add(at)
                assert measured.max == busiest(admitted)
