"""`dialer demo` at small size: the whole pipeline starts, dials, records and stops by itself."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from rich.console import Console

from workers.entrypoints.demo import DemoSettings, run_demo


@pytest.mark.timeout(300)
def test_demo_runs_the_pipeline_end_to_end_and_stops_everything(
    database_url: str, redis_client: Any, tmp_path: Path
) -> None:
    results = tmp_path / "results.csv"
    with (tmp_path / "demo.out").open("w") as out:
        campaign_id = run_demo(
            DemoSettings(rows=150, cps=40, workers=1, timeout_s=180, results_csv=results),
            console=Console(file=out, width=200),
        )
    with psycopg.connect(database_url) as conn:
        state = conn.execute(
            "SELECT state, rows_loaded FROM campaign WHERE id = %s", (campaign_id,)
        ).fetchone()
        statuses = dict(
            conn.execute(
                "SELECT status, count(*) FROM destination WHERE campaign_id = %s GROUP BY 1", (campaign_id,)
            ).fetchall()
        )
        attempts = conn.execute(
            "SELECT count(*), count(outcome) FROM call_attempt WHERE campaign_id = %s", (campaign_id,)
        ).fetchone()
    assert state is not None and state[0] == "completed"
    assert sum(statuses.values()) == state[1] and set(statuses) <= {"done", "failed"}
    assert attempts is not None and attempts[0] >= state[1] and attempts[0] == attempts[1], (
        "an attempt has no outcome"
    )
    with results.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == state[1] and all(r["outcome"] for r in rows)
    output = (tmp_path / "demo.out").read_text()
    assert "attempts by outcome" in output and "0 429s" in output
    # The live view (a line per refresh when not on a terminal) and where to watch it from.
    assert re.search(r"console: http://127\.0\.0\.1:\d+/ui/campaigns/\d+ \(sign in with the API key dlr_",
                     " ".join(output.split()))
    assert "/metrics" in output and "dialer flower" in output and f"search campaign={campaign_id}" in output
    assert f"campaign {campaign_id} completed: cps " in output and "eta 0m00s" in output
    # Answered calls talked (issue 22): the status table's talk time is theirs, not 0.
    talk = re.search(r"talk time, s\s*│\s*(\d+)", output)
    assert talk and int(talk.group(1)) > 0, output
    # The message template is filled from each row: what the answered calls heard names their person.
    heard = output.split("what answered calls heard", 1)[-1]
    assert "what answered calls heard" in output and "Hello " in heard and "{first_name}" not in heard
    with psycopg.connect(database_url) as conn:
        spoken = conn.execute("SELECT spoken_text FROM call_attempt WHERE campaign_id = %s AND outcome = "
                              "'answered' LIMIT 1", (campaign_id,)).fetchone()
    assert spoken and spoken[0].startswith("Hello ") and "{" not in spoken[0]



@pytest.mark.timeout(300)
@pytest.mark.parametrize("provider", ["vobiz", "tryvox", "voipbin", "bandwidth"])
def test_demo_runs_the_pipeline_on_every_provider(
    database_url: str, redis_client: Any, tmp_path: Path, provider: str
) -> None:
    results = tmp_path / "results.csv"
    with (tmp_path / "demo.out").open("w") as out:
        campaign_id = run_demo(
            # Retries after 1 s: the first test waits the demo's own 5 s; these check each provider's path.
            DemoSettings(rows=40, cps=40, workers=1, timeout_s=180, results_csv=results, provider=provider,
                         retry_delay_s=1),
            console=Console(file=out, width=200),
        )
    with psycopg.connect(database_url) as conn:
        state = conn.execute("SELECT state FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
        outcomes = dict(conn.execute(
            "SELECT outcome, count(*) FROM call_attempt WHERE campaign_id = %s GROUP BY 1", (campaign_id,)
        ).fetchall())
        provider_of = conn.execute(
            "SELECT p.provider FROM campaign c JOIN provider_account p ON p.id = c.account_id "
            "WHERE c.id = %s",
            (campaign_id,),
        ).fetchone()
    assert provider_of == (provider,)
    assert state is not None and state[0] == "completed", (provider, state)
    assert None not in outcomes and "unknown" not in outcomes, outcomes
    assert outcomes.get("answered", 0) > 0, outcomes
    output = (tmp_path / "demo.out").read_text()
    assert f"provider {provider}" in " ".join(output.split()) and "0 429s" in output
    # What a user would set in the provider's console (`dialer account add` prints the same): VoIPbin's
    # webhook, which the demo pastes into the simulated customer; nothing for the others.
    expected = "webhook_uri: http://" if provider == "voipbin" else f"{provider} console: nothing to set"
    assert f"{provider} console setup" in output and expected in output, output[:2000]
