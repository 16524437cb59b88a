"""`dialer campaign create --message`, `warnings`, `schedule`, `runs`, `rerun`, `clone` and `set` with
blackouts, against the real Postgres (CliRunner runs the real Typer app)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from campaigns.accounts import add_account
from workers.entrypoints.cli import app

runner = CliRunner()


def flat(text: str) -> str:
    return " ".join(text.split())


def _created(tmp_path: Path) -> int:
    path = tmp_path / "people.csv"
    path.write_text("phone,first_name\n+14155552671,Ann\n+14155552672,\n", encoding="utf-8")
    result = runner.invoke(app, ["campaign", "create", f"cli-runs-{secrets.token_hex(3)}", "--csv", str(path),
                                 "--message", "Hi {first_name}, see you soon"])
    assert result.exit_code == 0, result.output
    assert "1 rows lack a variable" in flat(result.output)
    match = re.search(r"campaign (\d+) ", result.stdout)
    assert match
    return int(match.group(1))


def test_warnings_list_the_row_missing_a_variable(database_url: str, tmp_path: Path) -> None:
    campaign_id = _created(tmp_path)
    result = runner.invoke(app, ["campaign", "warnings", str(campaign_id)])
    assert result.exit_code == 0 and "missing_variable" in result.stdout and "{first_name}" in result.stdout
    bad = runner.invoke(app, ["campaign", "set", str(campaign_id), "--message", "Hi {first_name"])
    assert bad.exit_code != 0 and "message template" in str(bad.exception)  # `dialer` prints it


def test_schedule_runs_rerun_and_clone_from_the_cli(database_url: str, tmp_path: Path,
                                                     db: psycopg.Connection) -> None:
    campaign_id = _created(tmp_path)
    shown = runner.invoke(app, ["campaign", "schedule", str(campaign_id), "--cron",
                                "30 9 * * 1-5 Europe/Paris", "--only", "busy,no_answer", "--run-for", "4h",
                                "--until", "2099-01-31"])
    assert shown.exit_code == 0, shown.output
    assert "'30 9 * * 1-5' in Europe/Paris" in flat(shown.stdout) and "busy, no_answer" in flat(shown.stdout)
    bad_cron = runner.invoke(app, ["campaign", "schedule", str(campaign_id), "--cron", "61 9 * * *"])
    assert bad_cron.exit_code != 0 and "not a valid" in str(bad_cron.exception)
    assert "removed" in runner.invoke(app, ["campaign", "schedule", str(campaign_id), "--off"]).stdout

    account = add_account(db, name=f"cli-runs-{secrets.token_hex(3)}", provider="plivo", auth_id="MACLI",
                          auth_token="t", cps=5, max_concurrent=5)
    db.execute("UPDATE campaign SET account_id = %s, caller_id = '+14155550100', state = 'completed' "
               "WHERE id = %s", (account, campaign_id))
    db.execute("UPDATE destination SET status = 'done', outcome = 'busy' WHERE campaign_id = %s",
               (campaign_id,))
    db.commit()
    rerun = runner.invoke(app, ["campaign", "rerun", str(campaign_id), "--only", "busy"])
    assert rerun.exit_code == 0, rerun.output
    assert "run 2 started with 2 destinations" in flat(rerun.stdout)
    runs = runner.invoke(app, ["campaign", "runs", str(campaign_id)])
    assert runs.exit_code == 0 and "rerun" in runs.stdout and "busy" in runs.stdout
    one = runner.invoke(app, ["campaign", "status", str(campaign_id), "--run", "2"])
    assert one.exit_code == 0 and "rerun" in one.stdout
    missing = runner.invoke(app, ["campaign", "status", str(campaign_id), "--run", "7"])
    assert "no run 7" in str(missing.exception)

    clone = runner.invoke(app, ["campaign", "clone", str(campaign_id), "--name", "copy"])
    assert clone.exit_code == 0 and "cloned as campaign" in clone.stdout

    blackout = runner.invoke(app, ["campaign", "set", str(campaign_id), "--holidays",
                                   "--blackout-dates", "2026-12-24,2026-12-31"])
    assert blackout.exit_code == 0, blackout.output
    row = db.execute("SELECT observe_holidays, blackout_dates::text FROM campaign WHERE id = %s",
                     (campaign_id,)).fetchone()
    assert row == (True, "{2026-12-24,2026-12-31}")
