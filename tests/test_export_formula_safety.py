"""Every CSV export goes through one formula-safe writer (campaigns.safe_csv): a DNC entry whose reason is
`=1+2` or `@SUM(A1)` comes out of `dialer dnc export` and `GET /dnc` with a leading apostrophe, and no
other module builds a csv writer. Real Postgres; the CLI as a subprocess."""

from __future__ import annotations

import csv
import io
import re
import secrets
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from campaigns.accounts import add_account
from tests.engine_harness import REPO

DIALER = str(Path(sys.executable).parent / "dialer")
FORMULAS = ("=1+2", "@SUM(A1)", "=HYPERLINK(\"http://x\")")
# `csv.writer(`, `csv.DictWriter(`, or the names imported bare from csv.
CSV_WRITER_CALL = re.compile(
    r"\bcsv\s*\.\s*(writer|DictWriter)\b|\bfrom\s+csv\s+import\b[^\n]*\b(writer|DictWriter)\b"
)
THE_ONE_WRITER = Path("campaigns/safe_csv.py")
# Writes the loader's sample input (campaigns/data/sample.csv), not an export of anyone's data.
NOT_AN_EXPORT = {Path("campaigns/data/make_sample.py")}


@pytest.fixture(scope="module")
def account(database_url: str) -> str:
    name = f"dnc-formula-{secrets.token_hex(4)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        add_account(conn, name=name, provider="plivo", auth_id="MAXX", auth_token="t", cps=5,
                    max_concurrent=10)
    return name


def _cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def _assert_formulas_escaped(exported: str) -> None:
    cells = _cells(exported)
    for formula in FORMULAS:
        assert "'" + formula in cells, (formula, cells)
    assert not [cell for cell in cells if cell.startswith(("=", "@"))], cells
    assert "+17185550201" in cells  # an E.164 number stays as it is, so the export still imports back


def test_the_cli_dnc_export_escapes_formulas_in_entries(account: str, tmp_path: Path) -> None:
    for number, formula in zip(("+17185550201", "+17185550202", "+17185550203"), FORMULAS, strict=True):
        added = subprocess.run([DIALER, "dnc", "add", number, "--account", account, "--reason", formula],
                               cwd=REPO, capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stdout + added.stderr
    target = tmp_path / "dnc.csv"
    out = subprocess.run([DIALER, "dnc", "export", "--account", account, "--out", str(target)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    _assert_formulas_escaped(target.read_text())


def test_the_api_dnc_export_escapes_formulas_in_entries(
    client: TestClient, auth: dict[str, str], account: str
) -> None:
    for number, formula in zip(("+17185550201", "+17185550204", "+17185550205"), FORMULAS, strict=True):
        added = client.post("/dnc", json={"number": number, "account": account, "reason": formula},
                            headers=auth)
        assert added.status_code == 201, added.text
    exported = client.get("/dnc", params={"account": account}, headers=auth)
    assert exported.status_code == 200
    _assert_formulas_escaped(exported.text)


def test_no_module_but_the_one_safe_writer_builds_a_csv_writer() -> None:
    writers = sorted(
        path.relative_to(REPO)
        for package in ("campaigns", "workers", "simulator")
        for path in Path(REPO, package).rglob("*.py")
        if CSV_WRITER_CALL.search(path.read_text(encoding="utf-8"))
    )
    assert [path for path in writers if path != THE_ONE_WRITER and path not in NOT_AN_EXPORT] == []
    assert THE_ONE_WRITER in writers  # the pattern still finds what it looks for
