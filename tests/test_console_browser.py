"""The operator console in a real browser (issue 21): Playwright drives Debian's Chromium (executable_path,
never a downloaded browser) against the real API, Celery workers, beat and the carrier simulator. It signs
in, uploads a CSV with a bad row and sees the reject, starts the campaign and watches its live figures move,
pauses and resumes it, waits for it to complete, downloads the results and checks them against the
simulator's ledger, and checks that a viewer key sees no start button and gets 403 on a forged POST.

Set CONSOLE_SCREENSHOTS=docs/console to write a screenshot of each page there (the README shows them).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from campaigns.accounts import add_account
from campaigns.api_keys import create_api_key
from tests.engine_harness import Stack, load_campaign, numbers, running_stack
from tests.sim_helpers import RunningSimulator, start_simulator

CHROMIUM = "/usr/bin/chromium"
INSTALL_LINE = "apt-get install -y chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"Chromium is missing: {INSTALL_LINE}", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.timeout(240)
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
AUTH_ID = "MACONSOLE"
ROWS = 80
OUTCOMES = {"answered": 70, "busy": 10, "no_answer": 20, "failed": 0, "machine": 0, "talk_time": [10, 20],
            "ring_time": [1, 3]}
SHOTS = os.environ.get("CONSOLE_SCREENSHOTS")


@pytest.fixture(scope="module")
def env(database_url: str, redis_client: Any) -> Iterator[tuple[RunningSimulator, Stack, int]]:
    config = {"accounts": [{"provider": "plivo", "auth_id": AUTH_ID, "auth_token": "tok-console", "cps": 10,
                            "max_concurrent": 100}], "outcomes": OUTCOMES}
    with start_simulator(config, speed=20, seed=21) as sim, running_stack(workers=1, threads=8) as stack:
        with psycopg.connect(database_url, autocommit=True) as conn:
            account_id = add_account(conn, name="console-plivo", provider="plivo", auth_id=AUTH_ID,
                                     auth_token="tok-console", cps=10, max_concurrent=100,
                                     base_url=sim.base_url)
        yield sim, stack, account_id


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield launched
        launched.close()


def _key(database_url: str, name: str, role: str, accounts: list[int] | None = None) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return create_api_key(conn, name=name, role=role, accounts=accounts or []).key


def _shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def _sign_in(browser: Any, base: str, key: str) -> Any:
    context = browser.new_context(base_url=base, accept_downloads=True,
                                  viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/ui/campaigns")
    assert "/ui/login" in page.url  # no session: the sign-in page
    _shot(page, "sign-in")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/campaigns")
    return page


def _figure(page: Any, name: str) -> str:
    return str(page.locator(f'[data-figure="{name}"]').inner_text())


def test_an_operator_runs_a_campaign_from_the_browser(env, browser, database_url, tmp_path) -> None:
    sim, stack, account_id = env
    phones = numbers(ROWS, start=2100, area="646")
    body = "phone,first_name\n" + "".join(f"{p},person{i}\n" for i, p in enumerate(phones[:40]))
    body += "12345,Bad Row\n" + "".join(f"{p},person{i}\n" for i, p in enumerate(phones[40:], 40))
    upload = tmp_path / "list.csv"
    upload.write_text(body)

    # 1. Sign in.
    page = _sign_in(browser, stack.api_url, _key(database_url, "browser-admin", "admin"))

    # 2. Upload a CSV with a bad row: the preview shows the detected columns, the create shows the reject.
    page.click("text=New campaign")
    page.fill("#name", "browser run")
    page.set_input_files("#file", str(upload))
    page.fill("#message", "Hello {first_name}, this is a test.")
    page.locator("#message").dispatch_event("change")
    page.wait_for_selector("#preview-panel")
    assert page.inner_text("#phone-column") == "phone"
    # The file and the message each ask for a preview: wait for the one that has the message in it.
    page.wait_for_function("document.querySelector('#preview-panel')"
                           ".innerText.includes('Hello person0, this is a test.')", timeout=10_000)
    page.select_option("#account", str(account_id))
    page.fill("#caller_id", "+14155550100")
    page.fill("#window", "00:00-00:00")
    page.fill("#days", "1-7")
    page.fill("#retries", "busy=1:1 no_answer=1:1")
    _shot(page, "new-campaign")
    page.click("#create")
    page.wait_for_url(re.compile(r".*/ui/campaigns/\d+$"))  # what was done is told once, not in the URL
    assert page.inner_text("#action-done") == "created"
    campaign_id = int(re.search(r"/ui/campaigns/(\d+)", page.url).group(1))  # type: ignore[union-attr]
    reject = page.locator("#rejects tbody tr")
    assert reject.count() == 1
    cells = reject.first.locator("td").all_inner_texts()
    assert cells[0] == "42" and cells[1] == "12345" and cells[2] == "not_possible"

    # 3. Start, and watch the live figures change (refreshed in place, no reload).
    page.click("#start")
    page.wait_for_selector("#pause")
    first = _figure(page, "destinations finished")
    page.wait_for_function(
        "f => document.querySelector('[data-figure=\"destinations finished\"]').innerText !== f", arg=first,
        timeout=30_000)
    assert _figure(page, "calls per second (now / budget)").endswith("/ 10")
    _shot(page, "campaign-running")
    page.goto("/ui/campaigns")
    page.wait_for_selector(f'tr[data-campaign="{campaign_id}"] .live b')
    _shot(page, "campaigns")
    page.goto(f"/ui/campaigns/{campaign_id}")

    # 4. Pause and resume.
    page.click("#pause")
    page.wait_for_selector("#resume")
    assert page.inner_text("#campaign-state") == "paused" and page.inner_text("#action-done") == "paused"
    page.reload()
    assert page.locator("#action-done").count() == 0  # a reload does not tell it again
    page.click("#resume")
    page.wait_for_selector("#pause")

    # 5. Wait for completion (the live panel says so without a reload).
    page.wait_for_function("document.querySelector('#campaign-state').innerText === 'completed'",
                           timeout=120_000)
    assert _figure(page, "destinations finished") == f"{ROWS} / {ROWS}"
    page.reload()
    _shot(page, "campaign-completed")

    # 6. Download the results and check them against what the carrier received.
    with page.expect_download() as download:
        page.click("#results-csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert sorted(r["number"] for r in rows) == sorted(phones)
    calls = [c for c in sim.ledger()["calls"] if c["account"] == AUTH_ID]
    last_call = {}
    for call in sorted(calls, key=lambda c: c["seq"]):
        last_call["+" + call["destination"].lstrip("+")] = call
    assert set(last_call) == set(phones), "a destination was not dialed, or one outside the list was"
    for row in rows:
        call = last_call[row["number"]]
        # Plivo's seed hangup tells answered and machine apart, and every other ending reads as no answer
        # (tests/test_providers_end_to_end.py, expected_outcome).
        expected = call["outcome"] if call["outcome"] in ("answered", "machine") else "no_answer"
        assert row["call_uuid"] == call["call_uuid"] and row["outcome"] == expected, (row, call)
    assert Counter(r["outcome"] for r in rows)["answered"] == sum(
        1 for c in last_call.values() if c["outcome"] == "answered") > 0
    with page.expect_download() as download:
        page.click("#results-json")
    assert '"number"' in Path(download.value.path()).read_text()

    # The other pages render (and are kept as screenshots).
    for path, name in (("/ui/dnc?account=" + str(account_id), "dnc"), ("/ui/accounts", "accounts")):
        page.goto(path)
        assert page.locator("main h1").count() == 1
        _shot(page, name)
    page.context.close()

    # 7. A viewer sees no start button, and a forged start is 403; the draft stays a draft.
    draft = load_campaign("viewer draft", numbers(3, start=2300, area="646"), account_id=account_id,
                          caller_id="+14155550100")
    viewer = _sign_in(browser, stack.api_url, _key(database_url, "browser-viewer", "viewer", [account_id]))
    viewer.goto(f"/ui/campaigns/{draft}")
    assert viewer.locator("#start").count() == 0 and viewer.locator("text=New campaign").count() == 0
    token = viewer.locator('input[name="csrf"]').first.get_attribute("value")
    forged = viewer.request.post(f"/ui/campaigns/{draft}/start", form={"csrf": token}, max_redirects=0)
    assert forged.status == 403
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT state FROM campaign WHERE id = %s", (draft,)).fetchone() == ("draft",)
    viewer.context.close()

