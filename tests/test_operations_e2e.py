"""Do-not-call, opt-out and frequency caps end to end: real API, Celery workers, beat, Postgres, Redis and
the carrier simulator. The simulator's ledger is the witness of what was actually dialed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from campaigns.accounts import add_account
from campaigns.api_keys import create_api_key
from campaigns.frequency_caps import set_account_caps
from tests.engine_harness import Stack, load_campaign, numbers, prepare_and_start, running_stack
from tests.polling import wait_for
from tests.sim_helpers import RunningSimulator, start_simulator

pytestmark = pytest.mark.timeout(300)

SPEED = 20.0
OPT_OUT_NUMBER = numbers(1, start=7000, area="646")[0]
BANDWIDTH_OPT_OUT_NUMBER = numbers(1, start=7001, area="646")[0]
APP_ID = "7fc9698a-b04a-468b-9e8f-91238c0d0086"
KEYPRESSES = {n: "9" for n in (OPT_OUT_NUMBER, BANDWIDTH_OPT_OUT_NUMBER)}
SIM_ACCOUNTS: list[dict[str, Any]] = [
    {"provider": "plivo", "auth_id": "MAOPSDNC", "auth_token": "tok-dnc", "cps": 5, "max_concurrent": 100},
    {"provider": "plivo", "auth_id": "MAOPSKEY", "auth_token": "tok-key", "cps": 20, "max_concurrent": 100},
    {"provider": "vobiz", "auth_id": "MA_OPSCAP", "auth_token": "tok-cap", "cps": 20, "max_concurrent": 100},
    {
        "provider": "bandwidth",
        "auth_id": "5550077",
        "auth_token": "bw-ops",
        "cps": 20,
        "max_concurrent": 100,
        "application_id": APP_ID,
        "api_username": "bw-ops-user",
    },
    {"provider": "plivo", "auth_id": "MAOPSMET", "auth_token": "tok-met", "cps": 10, "max_concurrent": 100},
    {"provider": "plivo", "auth_id": "MAOPSLIVE", "auth_token": "tok-live", "cps": 5, "max_concurrent": 100},
]
ALL_ANSWERED = {
    "answered": 100,
    "busy": 0,
    "no_answer": 0,
    "failed": 0,
    "machine": 0,
    "talk_time": [20, 30],
    "ring_time": [1, 2],
}


@pytest.fixture(scope="module")
def env(database_url: str, redis_client: Any) -> Iterator[tuple[RunningSimulator, Stack]]:
    config = {
        "accounts": SIM_ACCOUNTS,
        "outcomes": ALL_ANSWERED,
        "keypresses": {**KEYPRESSES, **{n.lstrip("+"): d for n, d in KEYPRESSES.items()}},
    }
    with start_simulator(config, speed=SPEED, seed=5) as sim, running_stack(workers=2, threads=8) as stack:
        yield sim, stack


def _account(db: psycopg.Connection, sim: RunningSimulator, index: int) -> int:
    raw = SIM_ACCOUNTS[index]
    return add_account(
        db,
        name=f"ops-{raw['auth_id']}",
        provider=raw["provider"],
        auth_id=raw["auth_id"],
        auth_token=raw["auth_token"],
        cps=raw["cps"],
        max_concurrent=100,
        base_url=sim.base_url,
        options={k: raw[k] for k in ("application_id", "api_username") if k in raw} or None,
    )


def _dialed(sim: RunningSimulator, auth_id: str) -> list[dict[str, Any]]:
    """The calls the carrier received for this account, numbers in E.164 with +."""
    calls = [c for c in sim.ledger()["calls"] if c["account"] == auth_id]
    return [{**c, "destination": "+" + c["destination"].lstrip("+")} for c in calls]


def _statuses(db: psycopg.Connection, campaign_id: int) -> dict[str, int]:
    rows = db.execute(
        "SELECT status, count(*) FROM destination WHERE campaign_id = %s GROUP BY 1", (campaign_id,)
    ).fetchall()
    return dict(rows)


def _dialer(*args: str) -> str:
    """The real `dialer` CLI in a subprocess (this session's environment)."""
    done = subprocess.run(
        [sys.executable, "-m", "workers.entrypoints.cli", *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_a_number_added_to_the_dnc_list_mid_run_is_never_called_after(env, db) -> None:
    sim, stack = env
    account_id = _account(db, sim, 0)
    phones = numbers(40, start=5000, area="646")
    campaign_id = load_campaign("dnc-mid-run", phones)
    prepare_and_start(db, campaign_id, account_id)
    wait_for(lambda: len(_dialed(sim, "MAOPSDNC")) >= 5, 30, what="the campaign dialing")
    listed = phones[-15:]  # at 5 CPS these are ~5 s away from being dialed
    _dialer("dnc", "add", *listed, "--account", "ops-MAOPSDNC", "--reason", "asked mid-run")
    added_at = time.time()
    wait_for(lambda: _statuses(db, campaign_id).keys() <= {"done", "dnc"}, 60, what="campaign finished")
    calls = _dialed(sim, "MAOPSDNC")
    late = [c for c in calls if c["destination"] in listed and c["received_at"] >= added_at]
    assert late == [], "a number was dialed after it was put on the do-not-call list"
    called_before = {c["destination"] for c in calls if c["destination"] in listed}
    assert _statuses(db, campaign_id).get("dnc", 0) == len(listed) - len(called_before) > 0
    assert len(calls) == len({c["destination"] for c in calls}), "a destination was dialed twice"


@pytest.mark.parametrize(
    ("index", "opt_out_number", "start"), [(1, OPT_OUT_NUMBER, 7100), (3, BANDWIDTH_OPT_OUT_NUMBER, 7300)]
)
def test_an_opt_out_keypress_lists_the_number_for_the_account(
    env, db, index, opt_out_number, start
) -> None:
    sim, stack = env
    account_id = _account(db, sim, index)
    provider = SIM_ACCOUNTS[index]["provider"]
    phones = [opt_out_number, *numbers(4, start=start, area="646")]
    campaign_id = load_campaign(f"opt-out-{provider}", phones)
    prepare_and_start(
        db,
        campaign_id,
        account_id,
        provider_options={
            "ring_timeout": 30,
            "time_limit": 60,
            "message": "Your bill is due.",
            "opt_out_digit": "9",
        },
    )

    def opted_out() -> Any:
        return db.execute(
            "SELECT a.opt_out_digits FROM call_attempt a JOIN destination d ON d.id = a.destination_id "
            "WHERE d.campaign_id = %s AND d.number = %s AND a.opted_out_at IS NOT NULL",
            (campaign_id, opt_out_number),
        ).fetchone()

    assert wait_for(opted_out, 60, what=f"the {provider} opt-out keypress recorded") == ("9",)
    listed = db.execute(
        "SELECT source FROM account_dnc_number WHERE account_id = %s AND number = %s",
        (account_id, opt_out_number),
    ).fetchone()
    assert listed == ("keypress",)
    opted = db.execute(
        "SELECT count(*) FROM call_attempt WHERE campaign_id = %s AND opted_out_at IS NOT NULL",
        (campaign_id,),
    ).fetchone()
    assert opted == (1,), "only the callee who pressed 9 opted out"
    auth_id = SIM_ACCOUNTS[index]["auth_id"]
    keypresses = [
        cb for cb in sim.ledger()["callbacks"] if cb["kind"] == "keypress" and cb["account"] == auth_id
    ]
    assert keypresses and all(200 <= cb["status"] < 300 for cb in keypresses)
    # The next campaign of the account refuses the number at load.
    again = load_campaign(f"opt-out-again-{provider}", [opt_out_number], account_id=account_id)
    rejected = db.execute("SELECT reason FROM rejected_row WHERE campaign_id = %s", (again,)).fetchall()
    assert rejected == [("dnc",)]
    # A keypress that does not carry the carrier's signature or credentials is refused like any forged one.
    forged = httpx.post(
        f"{stack.api_url}/callbacks/{provider}/{account_id}/keypress",
        data={"Digits": "9", "To": phones[1].lstrip("+")},
        timeout=5,
    )
    assert forged.status_code == 403
    count = db.execute(
        "SELECT count(*) FROM account_dnc_number WHERE account_id = %s", (account_id,)
    ).fetchone()
    assert count == (1,)


def test_a_frequency_cap_holds_across_two_campaigns_sharing_numbers(env, db) -> None:
    sim, stack = env
    account_id = _account(db, sim, 2)
    set_account_caps(db, account_id, per_day=1, per_week=3)
    shared = numbers(10, start=8000, area="646")
    first = load_campaign("cap-a", shared + numbers(5, start=8100, area="646"))
    second = load_campaign("cap-b", shared + numbers(5, start=8200, area="646"))
    prepare_and_start(db, first, account_id, start=False)
    prepare_and_start(db, second, account_id, start=False)
    db.execute("UPDATE campaign SET state = 'running' WHERE id = ANY(%s)", ([first, second],))

    def settled() -> bool:
        held = db.execute(
            "SELECT count(*) FROM destination WHERE campaign_id = ANY(%s) AND status = 'pending' "
            "AND next_attempt_at > now() + interval '20 hours'",
            ([first, second],),
        ).fetchone()
        done = db.execute(
            "SELECT count(*) FROM destination WHERE campaign_id = ANY(%s) AND status = 'done'",
            ([first, second],),
        ).fetchone()
        return held == (10,) and done == (20,)

    wait_for(settled, 60, what="each shared number dialed once and held back once")
    db.execute("UPDATE campaign SET state = 'paused' WHERE id = ANY(%s)", ([first, second],))
    dialed = Counter(c["destination"] for c in _dialed(sim, "MA_OPSCAP"))
    assert all(dialed[number] == 1 for number in shared), dialed
    assert sum(dialed.values()) == 20


def _samples(text: str, name: str) -> dict[str, float]:
    """{label text: value} of one metric in Prometheus exposition text."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            found[labels[len(name) :]] = float(value)
    return found


def test_metrics_after_a_small_campaign(env, db) -> None:
    sim, stack = env
    account_id = _account(db, sim, 4)
    campaign_id = load_campaign("metrics", numbers(12, start=9000, area="646"))
    prepare_and_start(db, campaign_id, account_id)
    wait_for(lambda: _statuses(db, campaign_id) == {"done": 12}, 60, what="the campaign done")
    api_key = create_api_key(db, name="ops-metrics", role="admin").key  # /metrics needs a key or the token
    text = httpx.get(f"{stack.api_url}/metrics", headers={"Authorization": f"Bearer {api_key}"},
                     timeout=10).text
    key = f'{{account="{account_id}",campaign="{campaign_id}"}}'
    assert _samples(text, "dialer_calls_placed_total")[key] == 12 == len(_dialed(sim, "MAOPSMET"))
    assert _samples(text, "dialer_calls_answered_total")[key] == 12
    assert _samples(text, "dialer_calls_failed_total").get(key, 0) == 0
    assert _samples(text, "dialer_cps_budget")[f'{{account="{account_id}"}}'] == 10
    assert _samples(text, "dialer_max_concurrent")[f'{{account="{account_id}"}}'] == 100
    assert set(_samples(text, "dialer_queue_depth")) == {
        '{queue="dial"}',
        '{queue="results"}',
        '{queue="housekeeping"}',
    }
    assert "dialer_attempts_past_lease " in text and "dialer_callback_lag_seconds " in text
    assert "+1646" not in text and "1646" not in text, "no phone number is ever a label"
    # Each worker serves its own: the requests it sent and how late they left their booked time.
    ports = [
        int(port) for port in re.findall(r"worker metrics on http://127\.0\.0\.1:(\d+)/metrics", stack.logs())
    ]
    assert len(ports) == 2, stack.logs()
    accepted = lateness = 0.0
    for port in ports:
        worker_text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        accepted += _samples(worker_text, "dialer_calls_sent_total").get(key, 0)
        lateness += _samples(worker_text, "dialer_send_lateness_seconds_count").get("", 0)
    assert accepted == 12 and lateness >= 1


def test_status_follow_prints_a_line_per_refresh_until_the_campaign_completes(env, db) -> None:
    sim, stack = env
    account_id = _account(db, sim, 5)
    campaign_id = load_campaign("follow", numbers(15, start=9500, area="646"))
    prepare_and_start(db, campaign_id, account_id)
    output = _dialer("campaign", "status", str(campaign_id), "--follow")  # not a TTY: plain lines
    lines = [line for line in output.splitlines() if line.startswith(f"campaign {campaign_id} ")]
    assert len(lines) >= 2, output
    assert any(re.search(r"cps [1-9][0-9.]*/5 ", line) for line in lines), "CPS now against the budget"
    assert "live " in lines[0] and "/100" in lines[0]
    assert lines[-1].startswith(f"campaign {campaign_id} completed") and "done 15/15" in lines[-1]
    assert "answered=15" in lines[-1] and "eta 0m00s" in lines[-1]
