"""A VoIPbin campaign set up from the CLI's own output alone gets every outcome.

The simulated VoIPbin customer starts with no webhook at all (a real customer's console is empty too), and
nothing in the harness wires one. The test does what a new user does: `dialer account add` (the CLI, in this
process), reads the webhook URL it printed, sets the simulated customer's webhook to exactly that (as one
pastes it into VoIPbin's console), `dialer account test`, then `dialer campaign create|set|start`. Every
destination must end with the outcome the simulator's ledger says its call had: real API, Celery workers,
beat, and the simulator as a real HTTP server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from tests.engine_harness import Stack, numbers, running_stack
from tests.results_helpers import attempt_rows, wait_for
from tests.sim_helpers import RunningSimulator, start_simulator
from workers.entrypoints.cli import app

pytestmark = pytest.mark.timeout(300)
runner = CliRunner()
AUTH_ID = "setup-from-cli-customer"
TOKEN = "setup-from-cli-token"
DESTINATIONS = 20
MIX = {"answered": 30, "busy": 20, "no_answer": 20, "failed": 15, "machine": 15,
       "talk_time": [1, 4], "ring_time": [1, 3]}
FINAL = ("done", "failed", "unknown", "cancelled", "expired", "invalid", "dnc")


@pytest.fixture(scope="module")
def env(database_url: str, redis_client: Any) -> Iterator[tuple[RunningSimulator, Stack]]:
    account = {"provider": "voipbin", "auth_id": AUTH_ID, "auth_token": TOKEN, "cps": 20,
               "max_concurrent": 100}
    config = {"accounts": [account], "outcomes": MIX, "callbacks": {"attempts": 5, "backoff": 1.0}}
    with start_simulator(config, speed=20, seed=19) as sim, running_stack(workers=1, threads=8) as stack:
        yield sim, stack


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


def _customer(sim: RunningSimulator) -> dict[str, Any]:
    customers: list[dict[str, Any]] = [a for a in sim.configure({})["accounts"] if a["auth_id"] == AUTH_ID]
    return customers[0]


def test_a_voipbin_campaign_set_up_from_the_cli_output_alone_gets_every_outcome(
    env: tuple[RunningSimulator, Stack], database_url: str, tmp_path: Path
) -> None:
    sim, _ = env
    assert _customer(sim)["webhook_uri"] is None, "no hidden wiring: the customer starts without a webhook"
    name = f"voipbin-{uuid.uuid4().hex[:6]}"
    added = _cli("account", "add", name, "--provider", "voipbin", "--auth-id", AUTH_ID, "--auth-token", TOKEN,
                 "--cps", "20", "--max-concurrent", "100", "--base-url", sim.base_url)
    console = dict(line.strip().split(": ", 1) for line in added.splitlines() if line.startswith("  "))
    assert console["webhook_method"] == "POST", added
    sim.configure({"accounts": {AUTH_ID: {"webhook_uri": console["webhook_uri"]}}})  # pasted, as printed
    checked = _cli("account", "test", name)
    assert "OK       credentials: credentials accepted" in checked, checked

    phones = numbers(DESTINATIONS, start=7100, area="917")
    csv_path = tmp_path / "people.csv"
    csv_path.write_text("phone,name\n" + "".join(f"{p},person {i}\n" for i, p in enumerate(phones)))
    campaign_name = f"from-cli-{uuid.uuid4().hex[:6]}"
    _cli("campaign", "create", campaign_name, "--csv", str(csv_path), "--default-region", "US")
    with psycopg.connect(database_url, autocommit=True) as conn:
        found = conn.execute("SELECT id FROM campaign WHERE name = %s", (campaign_name,)).fetchone()
        assert found is not None
        campaign_id = int(found[0])
        _cli("campaign", "set", str(campaign_id), "--account", name, "--caller-id", "+14155550100",
             "--window", "00:00-00:00", "--ring-timeout", "10", "--time-limit", "60",
             "--machine-detection", "hangup", "--message", "Hello {name}",
             *[arg for outcome in ("busy", "no_answer", "failed", "unknown")
               for arg in ("--retry", f"{outcome}=0:1")])
        _cli("campaign", "start", str(campaign_id))

        def settled() -> bool:
            open_rows = conn.execute(
                "SELECT count(*) FROM destination WHERE campaign_id = %s AND NOT (status = ANY(%s))",
                (campaign_id, list(FINAL)),
            ).fetchone()
            return open_rows == (0,)

        wait_for(settled, 150, "every destination final (no outcome arrives without the webhook)")
        sim.wait_idle(30)
        ledger = {"+" + c["destination"].lstrip("+"): c for c in sim.ledger()["calls"]
                  if c["account"] == AUTH_ID}
        rows = attempt_rows(conn, campaign_id)
    assert len(rows) == DESTINATIONS == len(ledger), (len(rows), len(ledger))
    for row in rows:
        call = ledger[row["number"]]
        # VoIPbin rings on until hung up: the dialer ends an unanswered call at the campaign's ring timeout
        # (the ledger's "cancelled"), which is the campaign's no_answer.
        expected = "no_answer" if call["outcome"] == "cancelled" else call["outcome"]
        where = (row["number"], call["outcome"], row)
        assert (row["status"], row["outcome"], row["d_outcome"]) == ("completed", expected, expected), where
        assert row["call_uuid"] == call["call_uuid"], where
    assert {r["outcome"] for r in rows} == {"answered", "busy", "no_answer", "failed", "machine"}
