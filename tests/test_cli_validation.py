"""The CLI checks settings with the API's rules: `dialer campaign set` refuses a caller ID of `abc`, an
unknown time zone, `--cps nan` and `--days 5-1`, each in one line naming the field, and changes nothing."""

from __future__ import annotations

import io
import secrets
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from campaigns.loader import LoadOptions, load_campaign_csv
from tests.engine_harness import REPO

DIALER = str(Path(sys.executable).parent / "dialer")


@pytest.fixture(scope="module")
def campaign(database_url: str) -> int:
    report = load_campaign_csv(name=f"cli-val-{secrets.token_hex(4)}", options=LoadOptions(),
                               source=io.BytesIO(b"phone\n+14155552671\n"))
    return report.campaign_id


@pytest.mark.parametrize(("args", "field"), [
    (["--caller-id", "abc"], "caller_id"),
    (["--timezone", "Mars/Olympus"], "timezone"),
    (["--cps", "nan"], "cps"),
    (["--days", "5-1"], "days"),
    (["--time-limit", "-5"], "provider_options.time_limit"),
])
def test_campaign_set_refuses_what_the_api_refuses(campaign: int, database_url: str, args: list[str],
                                                  field: str) -> None:
    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT caller_id, timezone_override, cps, window_days, provider_options "
                              "FROM campaign WHERE id = %s", (campaign,)).fetchone()
    out = subprocess.run([DIALER, "campaign", "set", str(campaign), *args], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in out.stderr, lines
    with psycopg.connect(database_url) as conn:
        after = conn.execute("SELECT caller_id, timezone_override, cps, window_days, provider_options "
                             "FROM campaign WHERE id = %s", (campaign,)).fetchone()
    assert after == before


def test_campaign_set_normalises_a_good_caller_id(campaign: int, database_url: str) -> None:
    out = subprocess.run([DIALER, "campaign", "set", str(campaign), "--caller-id", "(415) 555-0100",
                          "--days", "1-5", "--timezone", "Europe/Paris"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT caller_id, window_days, timezone_override FROM campaign WHERE id = %s",
                           (campaign,)).fetchone()
    assert row == ("+14155550100", [1, 2, 3, 4, 5], "Europe/Paris")


def test_rejects_export_and_display_are_safe_for_spreadsheets_and_terminals(database_url: str,
                                                                           tmp_path: Path) -> None:
    """A crafted CSV: a formula in the phone column and an ANSI escape. The export neutralises the formula;
    the terminal shows the escape instead of obeying it."""
    report = load_campaign_csv(name=f"cli-rej-{secrets.token_hex(4)}", options=LoadOptions(),
                               source=io.BytesIO(b"phone\n=HYPERLINK(\"http://x\")\n\x1b[2Jabc\n+14155552671\n"))
    target = tmp_path / "rejects.csv"
    out = subprocess.run([DIALER, "campaign", "rejects", str(report.campaign_id), "--csv", str(target)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    exported = target.read_text()
    assert "'=HYPERLINK" in exported and "\n=HYPERLINK" not in exported and ",=HYPERLINK" not in exported
    shown = subprocess.run([DIALER, "campaign", "rejects", str(report.campaign_id)], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert "\x1b[2J" not in shown.stdout and "\\x1b" in shown.stdout
