"""One owner per concurrency slot and per undo: a slot belongs to one attempt (its id), and an undo changes
only the rows it still owns. So a slow worker racing the reaper, or a redelivered chunk, can never free
another attempt's live slot nor reset a destination another worker has dialed.

Two dial-chunk runs in this process against real Postgres, Redis and the carrier simulator; the race is
staged at the point where it happens (inside the first run's budget calls), not left to timing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from campaigns.accounts import add_account
from campaigns.states import slot_member
from campaigns.store.settlements import hand_back_never_sent
from tests.engine_harness import load_campaign, numbers, prepare_and_start
from tests.sim_helpers import RunningSimulator, start_simulator
from workers import redis_keys
from workers.dialing.chunk import DialContext, dial_chunk
from workers.ratelimit import Budgets, Reservation

LONG_CALLS = {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
              "talk_time": [600, 600], "ring_time": [1, 1]}


class RacingBudgets(Budgets):
    """Budgets that run `race` once, inside the first acquire or reserve of this worker."""

    def __init__(self, client: Any, *, on: str, race: Callable[[], None]) -> None:
        super().__init__(client)
        self._on, self._race = on, race

    def _maybe_race(self, where: str) -> None:
        if self._on == where and self._race is not None:
            race, self._race = self._race, None  # once
            race()

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        taken = super().acquire(*args, **kwargs)
        self._maybe_race("acquire")
        return taken

    def reserve(self, *args: Any, **kwargs: Any) -> Reservation:
        self._maybe_race("reserve")
        return super().reserve(*args, **kwargs)


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with start_simulator({"accounts": [], "outcomes": LONG_CALLS}, speed=1.0, seed=5) as running:
        yield running


@pytest.fixture()
def setup(sim: RunningSimulator, database_url: str, redis_client: Any) -> Iterator[dict[str, Any]]:
    tag = uuid.uuid4().hex[:8].upper()
    auth_id = f"MASLOT{tag}"
    sim.configure({"accounts": [{"provider": "plivo", "auth_id": auth_id, "auth_token": "tok", "cps": 50,
                                 "max_concurrent": 100}]})
    with (psycopg.connect(database_url, autocommit=True) as conn,
          psycopg.connect(database_url, autocommit=True) as other, httpx.Client(timeout=5) as client):
        account_id = add_account(conn, name=f"slot-{tag}", provider="plivo", auth_id=auth_id,
                                 auth_token="tok", cps=50, max_concurrent=100, base_url=sim.base_url)
        campaign_id = load_campaign(f"slot-{tag}", numbers(1, start=int(tag[:4], 16) % 9000, area="718"))
        prepare_and_start(conn, campaign_id, account_id,
                          provider_options={"ring_timeout": 30, "time_limit": 900, "bulk": False})
        destination_id = conn.execute("SELECT id FROM destination WHERE campaign_id = %s",
                                      (campaign_id,)).fetchone()[0]
        yield {"conn": conn, "other": other, "client": client, "redis": redis_client, "auth_id": auth_id,
               "account_id": account_id, "campaign_id": campaign_id, "destination_id": destination_id}
        conn.execute("UPDATE campaign SET state = 'paused' WHERE id = %s", (campaign_id,))


def _claim(conn: psycopg.Connection, destination_id: int) -> None:
    conn.execute("UPDATE destination SET status = 'queued', next_attempt_at = now() + interval '30 seconds' "
                 "WHERE id = %s", (destination_id,))


def _attempts(conn: psycopg.Connection, destination_id: int) -> list[tuple[int, int, str]]:
    return [tuple(r) for r in conn.execute(  # type: ignore[misc]
        "SELECT id, attempt_no, status FROM call_attempt WHERE destination_id = %s ORDER BY id",
        (destination_id,)).fetchall()]


def _dial_as_another_worker(s: dict[str, Any]) -> None:
    report = dial_chunk(DialContext(s["other"], s["client"], Budgets(s["redis"])), s["campaign_id"],
                        [s["destination_id"]])
    assert report.sent == 1


def _one_live_call_holding_its_own_slot(sim: RunningSimulator, s: dict[str, Any]) -> None:
    """Exactly one attempt, sent; its slot, under its own id, is the account's only live one; one call."""
    (attempt_id, attempt_no, status), = _attempts(s["conn"], s["destination_id"])
    assert (attempt_no, status) == (1, "sent")
    member = slot_member(attempt_id)
    assert s["redis"].zscore(redis_keys.account_slots(s["account_id"]), member) is not None, (
        "the live call's slot is still held"
    )
    assert Budgets(s["redis"]).live_count(s["account_id"]) == 1
    assert sum(1 for c in sim.ledger()["calls"] if c["account"] == s["auth_id"]) == 1


def test_a_slow_worker_racing_the_reaper_never_frees_the_new_attempts_slot_nor_resets_its_destination(
    sim: RunningSimulator, setup: dict[str, Any]
) -> None:
    s = setup
    conn, other, dest = s["conn"], s["other"], s["destination_id"]
    _claim(conn, dest)

    def reaper_then_another_worker() -> None:
        # The slow worker has committed its attempt and stalls before marking it as sending: the reaper
        # hands it back as never sent, and another worker claims and dials the destination.
        handed = hand_back_never_sent(other, older_than_s=0)
        for account_id, campaign_id, member in handed:
            Budgets(s["redis"]).release(account_id, campaign_id, [member])
        _claim(other, dest)
        _dial_as_another_worker(s)

    slow = RacingBudgets(s["redis"], on="reserve", race=reaper_then_another_worker)
    report = dial_chunk(DialContext(conn, s["client"], slow), s["campaign_id"], [dest])

    assert report.sent == 0, "the slow worker sent nothing: its attempt was no longer its own"
    row = conn.execute("SELECT status, attempts_made FROM destination WHERE id = %s", (dest,)).fetchone()
    assert row == ("dialing", 1), "the destination the other worker dialed was not reset"
    _one_live_call_holding_its_own_slot(sim, s)


def test_a_redelivered_chunk_never_frees_the_slot_of_the_delivery_that_dialed(
    sim: RunningSimulator, setup: dict[str, Any]
) -> None:
    s = setup
    conn, dest = s["conn"], s["destination_id"]
    _claim(conn, dest)

    def redelivery_runs_first() -> None:
        # The first delivery holds its slot; the same chunk, redelivered, reads the destination still
        # queued, takes its own slot, wins the attempt row and dials.
        _dial_as_another_worker(s)

    first = RacingBudgets(s["redis"], on="acquire", race=redelivery_runs_first)
    report = dial_chunk(DialContext(conn, s["client"], first), s["campaign_id"], [dest])

    assert report.sent == 0, "the losing delivery sent nothing and gave back only its own slot"
    _one_live_call_holding_its_own_slot(sim, s)
