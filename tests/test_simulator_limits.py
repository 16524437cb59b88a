"""Carrier behaviour: CPS and concurrency hold under concurrent clients, bulk pacing, API and callback
faults, retries, reset and the ledger dump on exit."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulator.limits import SlidingWindow, TokenBucket, WindowMax
from tests.polling import wait_for
from tests.sim_helpers import CallbackSink, RunningSimulator, start_simulator

CONFIG = {
    "accounts": [
        {"provider": "tryvox", "auth_id": "cps-acct", "auth_token": "k1", "cps": 20, "max_concurrent": 10000},
        {"provider": "tryvox", "auth_id": "conc-acct", "auth_token": "k2", "cps": 1000, "max_concurrent": 5},
        {"provider": "plivo", "auth_id": "MABULK00000000000001", "auth_token": "k3", "cps": 5},
        {"provider": "tryvox", "auth_id": "fault-acct", "auth_token": "k4", "cps": 1000},
    ],
    "outcomes": {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
                 "ring_time": [1, 1], "talk_time": [10, 10]},
    "callbacks": {"attempts": 3, "backoff": 1.0, "backoff_factor": 2.0, "timeout": 2.0},
}


def test_token_bucket_and_window_arithmetic() -> None:
    bucket = TokenBucket(5, now=0.0)
    assert [bucket.try_take(1, 0.0) for _ in range(5)] == [0.0] * 5
    assert bucket.try_take(1, 0.0) == pytest.approx(0.2)
    assert bucket.try_take(1, 0.2) == 0.0
    big = TokenBucket(5, now=0.0)
    assert big.try_take(10, 0.0) == 0.0          # a bulk larger than the burst leaves the bucket in debt
    assert big.try_take(1, 1.0) > 0.0
    window = WindowMax()
    for t in (0.0, 0.5, 0.99, 1.0, 1.5):
        window.add(t)
    assert window.max == 3


def test_sliding_window_never_admits_more_than_cps_arrivals_in_any_second() -> None:
    strict = SlidingWindow(5)
    assert [strict.try_take(1, 0.1 * i) for i in range(5)] == [0.0] * 5
    # A bucket would have refilled half a token by 0.5 s; the window waits for the first arrival to age out.
    assert strict.try_take(1, 0.5) == pytest.approx(0.5)
    assert strict.try_take(1, 0.999) == pytest.approx(0.001)
    assert strict.try_take(1, 1.0) == 0.0  # the arrival at 0.0 left the window (t - 1, t]
    assert strict.try_take(2, 1.05) == pytest.approx(0.15)  # two must leave: 0.1 and 0.2 (+1 s)
    bulk = SlidingWindow(5)
    assert bulk.try_take(12, 0.0) == 0.0  # an oversized bulk only into an empty window, dialed at 5 CPS
    assert bulk.try_take(1, 1.5) == pytest.approx(0.5)  # it holds the windows of 0 s, 1 s and 2 s (2 of 5)
    assert bulk.try_take(3, 2.0) == 0.0
    assert bulk.try_take(1, 2.5) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with start_simulator(CONFIG, speed=10, seed=2) as sim:
        yield sim


def tryvox(client: httpx.Client, sim: RunningSimulator, auth_id: str, key: str, to: str,
           answer_url: str = "http://127.0.0.1:9/a") -> httpx.Response:
    body = {"from": "+14155550000", "to": to, "answer_url": answer_url}
    return client.post(f"{sim.base_url}/v1/voice/accounts/{auth_id}/calls", json=body,
                       headers={"Authorization": f"Bearer {key}"})


def hammer(sim: RunningSimulator, auth_id: str, key: str, *, threads: int, seconds: float) -> list[int]:
    codes: list[int] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(n: int) -> None:
        with httpx.Client() as client:
            i = 0
            while time.monotonic() < stop_at:
                code = tryvox(client, sim, auth_id, key, f"+1415{n:03d}{i:04d}").status_code
                with lock:
                    codes.append(code)
                i += 1

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return codes


def test_cps_window_holds_under_concurrent_clients_and_window_is_measured(sim: RunningSimulator) -> None:
    """The carrier's strict sliding window admits exactly CPS arrivals in the densest second, never more;
    the ledger's window measurement matches the densest second recomputed from the ledger's calls."""
    codes = hammer(sim, "cps-acct", "k1", threads=8, seconds=2.0)
    accepted = codes.count(201)
    assert set(codes) <= {201, 429} and codes.count(429) > 0
    assert 20 <= accepted <= 20 * 3
    account = sim.stats()["accounts"]["cps-acct"]
    assert account["accepted"] == accepted and account["rejected_cps"] == codes.count(429)
    received = sorted(c["received_at"] for c in sim.ledger()["calls"] if c["account"] == "cps-acct")
    densest = max(sum(1 for t in received if start <= t < start + 1.0) for start in received)
    assert abs(account["max_in_1s_window"] - densest) <= 1
    assert account["max_in_1s_window"] == 20


def test_concurrency_limit_counts_live_calls(sim: RunningSimulator) -> None:
    codes = hammer(sim, "conc-acct", "k2", threads=6, seconds=0.5)
    assert codes.count(201) == 5 and codes.count(429) == len(codes) - 5
    account = sim.stats()["accounts"]["conc-acct"]
    assert account["max_concurrent_observed"] == 5 and account["rejected_concurrency"] == len(codes) - 5
    wait_for(lambda: not sim.stats()["accounts"]["conc-acct"]["live"], 5, "no live call left", interval=0.05)
    with httpx.Client() as client:
        assert tryvox(client, sim, "conc-acct", "k2", "+14155559999").status_code == 201  # slots released


def test_bulk_request_is_paced_at_cps_and_blocks_the_bucket(sim: RunningSimulator) -> None:
    url = f"{sim.base_url}/v1/Account/MABULK00000000000001/Call/"
    to = "<".join(f"+1202555{i:04d}" for i in range(10))
    body = {"from": "+12025550000", "to": to, "answer_url": "http://127.0.0.1:9/a"}
    resp = httpx.post(url, json=body, auth=("MABULK00000000000001", "k3"))
    assert resp.status_code == 201 and len(resp.json()["request_uuid"]) == 10
    again = httpx.post(url, json={**body, "to": "+12025559999"}, auth=("MABULK00000000000001", "k3"))
    assert again.status_code == 429

    def placed_calls() -> list[float] | None:
        calls = [c for c in sim.ledger()["calls"] if c["account"] == "MABULK00000000000001"]
        placed_at = sorted(c["placed_at"] for c in calls if c["placed_at"] is not None)
        return placed_at if len(placed_at) == len(calls) == 10 else None

    placed = wait_for(placed_calls, 5, "all 10 calls placed", interval=0.05)
    assert len(placed) == 10 and placed[-1] - placed[0] >= 1.7  # 10 calls at 5 CPS: 1.8 s


def test_api_faults_5xx_and_no_answer(sim: RunningSimulator) -> None:
    sim.configure({"faults": {"api_5xx": 1.0}})
    try:
        with httpx.Client() as client:
            resp = tryvox(client, sim, "fault-acct", "k4", "+14155550001")
    finally:
        sim.configure({"faults": {"api_5xx": 0.0}})
    assert resp.status_code >= 500
    assert not [c for c in sim.ledger()["calls"] if c["destination"] == "+14155550001"]
    sim.configure({"faults": {"api_no_answer": 1.0}})
    try:
        with httpx.Client(timeout=0.5) as client, pytest.raises(httpx.ReadTimeout):
            tryvox(client, sim, "fault-acct", "k4", "+14155550002")
    finally:
        sim.configure({"faults": {"api_no_answer": 0.0}})
    assert [c for c in sim.ledger()["calls"] if c["destination"] == "+14155550002"]


def test_callbacks_are_retried_dropped_and_counted(sim: RunningSimulator, sink: CallbackSink) -> None:
    sink.statuses["/retry"] = [500, 503]
    with httpx.Client() as client:
        tryvox(client, sim, "fault-acct", "k4", "+14155550003", answer_url=sink.url("/retry"))
        got = sink.wait_for(lambda reqs: sum(r.path == "/retry" for r in reqs) >= 3, timeout=10)
        assert sum(r.path == "/retry" for r in got) == 3
        def retry_attempts() -> list[dict[str, Any]] | None:
            attempts = [a for a in sim.ledger()["callbacks"] if a["url"].endswith("/retry")]
            return attempts if len(attempts) >= 3 else None

        attempts = wait_for(retry_attempts, 5, "three attempts of the /retry callback", interval=0.05)
        assert [a["status"] for a in sorted(attempts, key=lambda a: a["attempt"])] == [500, 503, 200]
        sim.configure({"faults": {"drop": 1.0}})
        try:
            tryvox(client, sim, "fault-acct", "k4", "+14155550004", answer_url=sink.url("/dropped"))
            wait_for(lambda: sim.stats()["callbacks"]["dropped"] >= 1, 5, "the callback dropped",
                     interval=0.05)
        finally:
            sim.configure({"faults": {"drop": 0.0}})
    assert not [r for r in sink.snapshot() if r.path == "/dropped"]
    assert sim.stats()["callbacks"]["dropped"] >= 1
    sim.reset()
    assert sim.ledger()["calls"] == [] and sim.stats()["totals"]["accepted"] == 0


def test_ledger_is_dumped_on_exit(tmp_path: Path) -> None:
    out = tmp_path / "ledger.json"
    config = {"accounts": [{"provider": "tryvox", "auth_id": "a", "auth_token": "k"}]}
    with start_simulator(config, speed=100, seed=1, ledger_out=out) as sim, httpx.Client() as client:
        assert tryvox(client, sim, "a", "k", "+14155550005").status_code == 201
    dump = json.loads(out.read_text())
    assert dump["stats"]["accounts"]["a"]["accepted"] == 1 and len(dump["ledger"]["calls"]) == 1
