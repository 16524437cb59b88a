"""The worker's request counters: every call-creation request is counted once by how it ended, and the
carrier's error still reaches the dial task unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from workers.metrics import counters as metrics
from workers.providers.calls import AccountCredentials, CallbackUrls, CallsAccepted, OutboundCall
from workers.providers.errors import AuthFailed, Throttled

ACCOUNT = 424242
CALL = OutboundCall(
    caller_id="+14155550100",
    destinations=["+12125550100", "+12125550101"],
    callbacks=CallbackUrls(answer_url="a", hangup_url="h"),
)


class FakeAdapter:
    def __init__(self, outcome: Exception | None) -> None:
        self.outcome = outcome

    def create_calls(self, client: Any, creds: Any, call: OutboundCall) -> CallsAccepted:
        if self.outcome is not None:
            raise self.outcome
        return CallsAccepted(request_uuids=["r"], calls=[])


def _creds() -> AccountCredentials:
    return AccountCredentials(
        account_id=ACCOUNT, provider="plivo", auth_id="MA", auth_token="t", base_url="http://127.0.0.1:9"
    )


def _count(result: str) -> float:
    return metrics.REQUESTS.labels(str(ACCOUNT), result)._value.get()


def test_each_request_is_counted_by_how_it_ended_and_errors_pass_through() -> None:
    before = {r: _count(r) for r in ("accepted", "throttled", "auth_failed")}
    metrics.counted_create_calls(FakeAdapter(None), None, _creds(), CALL, 7)  # type: ignore[arg-type]
    with pytest.raises(Throttled):
        metrics.counted_create_calls(FakeAdapter(Throttled("slow down")), None, _creds(), CALL, 7)  # type: ignore[arg-type]
    with pytest.raises(AuthFailed):
        metrics.counted_create_calls(FakeAdapter(AuthFailed("no")), None, _creds(), CALL, 7)  # type: ignore[arg-type]
    assert {r: _count(r) - before[r] for r in before} == {"accepted": 1, "throttled": 1, "auth_failed": 1}
    assert metrics.CALLS_SENT.labels(str(ACCOUNT), "7")._value.get() >= 2


def test_with_a_multiprocess_directory_the_counts_of_every_process_are_summed(tmp_path) -> None:
    script = (
        "from workers.metrics import counters as metrics\n"
        "metrics.count_request(5, 'accepted', 9, sent=3)\n"
        "from prometheus_client import generate_latest\n"
        "print(generate_latest(metrics.registry()).decode())\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    outputs = [
        subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    ]
    assert 'dialer_calls_sent_total{account="5",campaign="9"} 3.0' in outputs[0]
    assert 'dialer_calls_sent_total{account="5",campaign="9"} 6.0' in outputs[1], (
        "the second process sees both"
    )
