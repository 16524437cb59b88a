"""The carrier's fault knobs that hurt: placed but answered 5xx, 503 with Retry-After from its limiter,
refusing connections for a while, arrival jitter in front of the strict window, and the limiter kinds."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from simulator.config import ConfigError, load_config
from tests.sim_helpers import CallbackSink, RunningSimulator, start_simulator

CONFIG = {
    "accounts": [
        {"provider": "tryvox", "auth_id": "faulty", "auth_token": "k1", "cps": 1000, "max_concurrent": 1000},
        {"provider": "tryvox", "auth_id": "strict", "auth_token": "k2", "cps": 10, "max_concurrent": 1000},
    ],
    "outcomes": {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
                 "ring_time": [1, 1], "talk_time": [1, 1]},
}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with start_simulator(CONFIG, speed=20, seed=4) as sim:
        yield sim


def create(client: httpx.Client, sim: RunningSimulator, to: str, *, auth_id: str = "faulty", key: str = "k1",
           hangup_url: str = "http://127.0.0.1:9/h") -> httpx.Response:
    body = {"from": "+14155550000", "to": to, "answer_url": "http://127.0.0.1:9/a", "hangup_url": hangup_url}
    return client.post(f"{sim.base_url}/v1/voice/accounts/{auth_id}/calls", json=body,
                       headers={"Authorization": f"Bearer {key}"})


def test_placed_but_5xx_places_the_call_and_sends_its_real_callbacks(sim: RunningSimulator) -> None:
    sim.configure({"faults": {"api_placed_5xx": 1.0}})
    try:
        with CallbackSink() as sink, httpx.Client() as client:
            resp = create(client, sim, "+14155551001", hangup_url=sink.url("/hangup"))
            assert resp.status_code in (502, 504)
            sink.wait_for(lambda reqs: any(r.path == "/hangup" for r in reqs), timeout=10)
    finally:
        sim.configure({"faults": {"api_placed_5xx": 0.0}})
    calls = [c for c in sim.ledger()["calls"] if c["destination"] == "+14155551001"]
    assert len(calls) == 1 and calls[0]["answered_status"] == resp.status_code
    assert sim.stats()["totals"]["placed_but_5xx"] >= 1


def test_503_from_the_limiter_says_retry_after_and_places_nothing(sim: RunningSimulator) -> None:
    sim.configure({"faults": {"api_503": 1.0, "api_503_retry_after": 2.5}})
    try:
        with httpx.Client() as client:
            resp = create(client, sim, "+14155551002")
    finally:
        sim.configure({"faults": {"api_503": 0.0}})
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "3"
    assert not [c for c in sim.ledger()["calls"] if c["destination"] == "+14155551002"]


def test_a_lone_429_within_the_budget_places_nothing_and_is_counted(sim: RunningSimulator) -> None:
    sim.configure({"faults": {"api_429": 1.0}})
    try:
        with httpx.Client() as client:
            before = sim.stats()["accounts"].get("faulty", {}).get("rejected_429", 0)
            resp = create(client, sim, "+14155551003")
    finally:
        sim.configure({"faults": {"api_429": 0.0}})
    assert resp.status_code == 429
    assert not [c for c in sim.ledger()["calls"] if c["destination"] == "+14155551003"]
    assert sim.stats()["accounts"]["faulty"]["rejected_429"] == before + 1


def test_refusing_connections_gives_connect_errors_then_listens_again(sim: RunningSimulator) -> None:
    with httpx.Client(timeout=2.0) as client:
        assert create(client, sim, "+14155551003").status_code == 201  # a keep-alive connection is open
        sim.refuse_connections(1.5)
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):
            create(client, sim, "+14155551004")
        deadline = time.monotonic() + 10
        while True:
            try:
                assert create(client, sim, "+14155551005").status_code == 201
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the carrier never listened again"
                time.sleep(0.1)
    destinations = {c["destination"] for c in sim.ledger()["calls"]}
    assert "+14155551004" not in destinations and "+14155551005" in destinations


def test_strict_window_with_arrival_jitter_admits_at_most_cps_per_second(sim: RunningSimulator) -> None:
    sim.configure({"limiter": {"arrival_jitter_ms": {"mean": 5, "spread": 5}}})
    try:
        codes = []
        with httpx.Client() as client:
            stop_at = time.monotonic() + 1.6
            i = 0
            while time.monotonic() < stop_at:
                codes.append(create(client, sim, f"+1415556{i:04d}", auth_id="strict", key="k2").status_code)
                i += 1
    finally:
        sim.configure({"limiter": {"arrival_jitter_ms": {"mean": 0, "spread": 0}}})
    assert codes.count(429) > 0 and 10 <= codes.count(201) <= 20
    assert sim.stats()["accounts"]["strict"]["max_in_1s_window"] == 10


def test_limiter_config_is_validated_and_round_trips() -> None:
    limiter = {"kind": "token_bucket", "arrival_jitter_ms": {"mean": 5, "spread": 2}}
    assert load_config({"accounts": [], "limiter": limiter}).to_dict()["limiter"] == limiter
    assert load_config(None).limiter.kind == "sliding_window"  # strict by default
    for bad in ({"kind": "leaky"}, {"arrival_jitter_ms": {"mean": -1}}, {"arrival_jitter_ms": 5}, {"x": 1}):
        with pytest.raises(ConfigError):
            load_config({"accounts": [], "limiter": bad})


def test_a_default_arrival_jitter_applies_unless_the_config_sets_its_own() -> None:
    from simulator.config import parse_jitter

    jitter = parse_jitter("5,5")
    assert load_config(None, jitter).to_dict()["limiter"]["arrival_jitter_ms"] == {"mean": 5.0, "spread": 5.0}
    own = {"accounts": [], "limiter": {"arrival_jitter_ms": {"mean": 1, "spread": 0}}}
    assert load_config(own, jitter).to_dict()["limiter"]["arrival_jitter_ms"] == {"mean": 1.0, "spread": 0.0}
    with pytest.raises(ConfigError, match="MEAN,SPREAD"):
        parse_jitter("5")


def test_every_simulator_a_suite_starts_takes_the_jitter_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIMULATOR_ARRIVAL_JITTER_MS=5,5 make test runs the whole suite against a jittery carrier."""
    monkeypatch.setenv("SIMULATOR_ARRIVAL_JITTER_MS", "4,3")
    with start_simulator(CONFIG, speed=20, seed=4) as jittery:
        limiter = jittery.configure({})["limiter"]
    assert limiter["arrival_jitter_ms"] == {"mean": 4.0, "spread": 3.0}
