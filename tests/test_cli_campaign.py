"""`dialer campaign create | list | show | rejects` through Typer's CliRunner, against the real Postgres."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from workers.entrypoints.cli import app

runner = CliRunner()


def flat(text: str) -> str:
    """Output with Rich's line wrapping undone."""
    return " ".join(text.split())
CSV = ("phone;first_name\n"
       "+14155552671;Ann\n"
       "12345;Bo\n"
       "(415) 555-2671;Cy\n"
       "+442079460018;Di;extra\n"
       "+4930901820;Ed\n")


@pytest.fixture()
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    path.write_text(CSV, encoding="utf-8")
    return path


def create(database_url: str, path: Path, *args: str) -> tuple[int, str]:
    name = f"cli-{secrets.token_hex(4)}"
    result = runner.invoke(app, ["campaign", "create", name, "--csv", str(path), *args])
    assert result.exit_code == 0, result.output
    match = re.search(r"campaign (\d+) ", result.stdout)
    assert match, result.stdout
    return int(match.group(1)), flat(result.stdout)


def test_create_loads_the_file_and_prints_counts_per_reason(database_url: str, csv_file: Path,
                                                            db: psycopg.Connection) -> None:
    campaign_id, output = create(database_url, csv_file)
    assert "2 of 5 rows loaded, 3 rejected" in output
    assert re.search(r"duplicate │ 1 ", output)
    assert re.search(r"not_possible │ 1 ", output)
    assert re.search(r"wrong_column_count │ 1 ", output)
    assert "delimiter ';'" in output
    row = db.execute("SELECT state, rows_loaded FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    assert row == ("draft", 2)


def test_create_with_phone_column_region_and_caller_id(database_url: str, tmp_path: Path,
                                                       db: psycopg.Connection) -> None:
    path = tmp_path / "gb.csv"
    path.write_text("name,work\nAnn,020 7946 0018\n", encoding="utf-8")
    campaign_id, _ = create(database_url, path, "--phone-column", "WORK", "--default-region", "GB",
                            "--caller-id", "020 7946 0000")
    row = db.execute("SELECT c.caller_id, d.number, d.variables FROM campaign c JOIN destination d "
                     "ON d.campaign_id = c.id WHERE c.id = %s", (campaign_id,)).fetchone()
    assert row == ("+442079460000", "+442079460018", {"name": "Ann"})


def test_create_refuses_a_bad_file_with_its_reason_and_stores_nothing(database_url: str, tmp_path: Path,
                                                                      db: psycopg.Connection) -> None:
    path = tmp_path / "names.csv"
    path.write_text("name,city\nAnn,Paris\n", encoding="utf-8")
    name = f"cli-{secrets.token_hex(4)}"
    result = runner.invoke(app, ["campaign", "create", name, "--csv", str(path)])
    assert result.exit_code == 1
    assert "no_phone_column" in flat(result.output) and "the columns are: name, city" in flat(result.output)
    assert db.execute("SELECT count(*) FROM campaign WHERE name = %s", (name,)).fetchone() == (0,)


def test_create_refuses_an_unknown_account(database_url: str, csv_file: Path) -> None:
    result = runner.invoke(app, ["campaign", "create", "x", "--csv", str(csv_file), "--account", "nobody"])
    assert result.exit_code != 0
    assert "nobody" in str(result.exception)


def test_rejects_lists_rows_by_line_with_reason_filter_and_limit(database_url: str, csv_file: Path) -> None:
    campaign_id, _ = create(database_url, csv_file)
    result = runner.invoke(app, ["campaign", "rejects", str(campaign_id)])
    assert result.exit_code == 0, result.output
    lines = [int(n) for n in re.findall(r"^│\s*(\d+)\s*│", result.stdout, re.MULTILINE)]
    assert lines == [3, 4, 5]
    assert "same number as line 2" in result.stdout
    only = runner.invoke(app, ["campaign", "rejects", str(campaign_id), "--reason", "duplicate"])
    assert "(415) 555-2671" in only.stdout and "12345" not in only.stdout
    limited = runner.invoke(app, ["campaign", "rejects", str(campaign_id), "--limit", "1"])
    assert "showing 1 of 3" in limited.stdout
    bad = runner.invoke(app, ["campaign", "rejects", str(campaign_id), "--reason", "nope"])
    assert bad.exit_code != 0


def test_show_and_list_summarise_the_campaign(database_url: str, csv_file: Path) -> None:
    campaign_id, _ = create(database_url, csv_file)
    shown = runner.invoke(app, ["campaign", "show", str(campaign_id)])
    assert shown.exit_code == 0, shown.output
    assert "draft" in shown.stdout
    assert re.search(r"pending\s*│\s*2", shown.stdout)
    assert re.search(r"wrong_column_count\s*│\s*1", shown.stdout)
    listed = runner.invoke(app, ["campaign", "list", "--state", "draft", "--limit", "500"])
    assert listed.exit_code == 0
    assert re.search(rf"│\s*{campaign_id}\s*│", listed.stdout)
    missing = runner.invoke(app, ["campaign", "show", "999999999"])
    assert missing.exit_code != 0 and "no campaign" in str(missing.exception)
