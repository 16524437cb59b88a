"""`dialer demo --failover` (issue 23): the primary carrier's simulator refuses connections mid-campaign, the
backup (another provider, its own simulator) takes over, nobody is dialed twice, no carrier answers 429, and
the primary takes attempts again once it recovers. End to end at a small size; the summary's arithmetic
apart, on made-up ledgers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from rich.console import Console
from typer.testing import CliRunner

from workers.entrypoints.cli import app
from workers.entrypoints.demo_failover import FailoverSettings, run_failover_demo
from workers.entrypoints.failover_report import Carrier, Change, summarise, summary_lines


@pytest.mark.timeout(240)
def test_failover_demo_shows_the_backup_taking_over_and_the_primary_coming_back(
    database_url: str, redis_client: Any, tmp_path: Path
) -> None:
    # 240 calls at 20 CPS: 40 on the primary, a 4 s refusal, a 5 s cool-down, then the primary again.
    settings = FailoverSettings(rows=240, cps=20, workers=1, fail_after_s=2.0, refused_s=4.0, cooldown_s=5.0,
                                timeout_s=120.0)
    with (tmp_path / "demo.out").open("w") as out:
        run = run_failover_demo(settings, console=Console(file=out, width=200))
    output = " ".join((tmp_path / "demo.out").read_text().split())
    summary = run.summary
    assert summary is not None, output[-3000:]
    with psycopg.connect(database_url) as conn:
        state, loaded = conn.execute("SELECT state, rows_loaded FROM campaign WHERE id = %s",
                                     (run.campaign_id,)).fetchone() or (None, None)
        by_account: dict[str, int] = dict(conn.execute(
            "SELECT p.name, count(*) FROM call_attempt a JOIN provider_account p ON p.id = a.account_id "
            "WHERE a.campaign_id = %s AND a.status = 'completed' GROUP BY 1", (run.campaign_id,)).fetchall())
    assert state == "completed", output[-3000:]
    assert summary.dialed_twice == {} and summary.numbers == loaded, summary
    assert summary.throttled == {"plivo (primary)": 0, "tryvox (backup)": 0}
    assert summary.opened_after_s is not None and summary.opened_after_s < 3.0, summary.changes
    assert summary.took_over_after_s is not None and summary.took_over_after_s <= 5.0, summary
    assert summary.primary_returned and summary.returned_calls > 0, summary
    states = [c[0] for c in summary.changes]
    assert states[0] == "open" and "half_open" in states and states[-1] == "closed", summary.changes
    # What the carriers placed is what the attempt history says each account placed.
    assert by_account == {"demo-failover-primary": summary.calls["plivo (primary)"],
                          "demo-failover-backup": summary.calls["tryvox (backup)"]}, by_account
    # The live view: a line a second with each carrier's calls and circuit, and each change as it happens.
    assert re.search(r"plivo \(primary\): \d+ calls, refusing connections, circuit", output)
    assert re.search(r"tryvox \(backup\): \d+ calls, circuit closed", output)
    assert "plivo (primary) refuses connections for 4 s" in output
    for state_ in ("open", "half_open", "closed"):
        assert f"plivo (primary) circuit → {state_}" in output, state_
    assert "failover summary" in output and f"dialed twice: 0 of {loaded} numbers" in output
    assert "429s: 0 (" in output and "DIALER_CIRCUIT_COOLDOWN_S=5" in output


def _carrier(label: str, calls: list[tuple[str, float]], throttled: int = 0) -> Carrier:
    return Carrier(label, [t for _, t in calls], [n for n, _ in calls], throttled)


def test_the_summary_counts_double_dials_across_carriers_and_the_primary_s_return() -> None:
    primary = _carrier("p", [("+1", 99.0), ("+2", 99.5), ("+5", 107.0), ("+6", 108.0)])
    backup = _carrier("b", [("+3", 101.5), ("+2", 102.0), ("+4", 103.0)], throttled=2)
    changes = [Change("closed", "enabled", 50.0), Change("open", "20 of 40 failed", 100.8),
               Change("half_open", None, 106.5), Change("closed", "3 probes passed", 106.9)]
    summary = summarise(primary, backup, fault_start=100.0, fault_seconds=6.0, changes=changes)
    assert summary.calls == {"p": 4, "b": 3} and summary.numbers == 6
    assert summary.dialed_twice == {"+2": 2}
    assert summary.opened_after_s == pytest.approx(0.8)
    assert summary.took_over_after_s == pytest.approx(1.5)
    assert summary.returned_after_s == pytest.approx(7.0) and summary.returned_calls == 2
    assert summary.throttled == {"p": 0, "b": 2}
    text = "\n".join(summary_lines(summary, "p", "b", {"X": "1"}))
    assert "dialed twice: 1 of 6 numbers" in text and "+2 ×2" in text and "429s: 2 (p 0, b 2)" in text
    assert "open +0.8 s (20 of 40 failed) → half_open +6.5 s → closed +6.9 s" in text


def test_the_summary_says_so_when_nothing_failed_over_or_came_back() -> None:
    primary = _carrier("p", [("+1", 99.0)])
    summary = summarise(primary, _carrier("b", [("+2", 98.0)]), 100.0, 6.0, [])
    assert not summary.backup_took_over and not summary.primary_returned and summary.opened_after_s is None
    text = "\n".join(summary_lines(summary, "p", "b", {}))
    assert "breaker opened: never" in text and "took no new attempts after it recovered" in text


def test_the_failover_demo_takes_no_provider() -> None:
    result = CliRunner().invoke(app, ["demo", "--failover", "--provider", "vobiz"])
    assert result.exit_code == 2 and "takes no --provider" in result.output, result.output
