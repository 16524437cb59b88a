"""`dialer demo`: the whole pipeline on this machine, start to finish, then everything stopped again.

Starts the carrier simulator, the API, Celery workers and beat in the background; adds a provider account
pointing at the simulator (`--provider`: plivo by default, or any of the five, each speaking its seed's
shapes); prints what a user would set in that provider's console (workers.providers.console_setup: for
VoIPbin the webhook URL, which the demo then sets in the simulator as a user would in VoIPbin's console);
loads the 10,000-row sample CSV shipped in campaigns/data; runs the campaign at 100 CPS with a progress bar;
prints the results table and where the results are. `dialer demo --failover`
(workers.entrypoints.demo_failover) builds on the helpers here.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

import campaigns
from campaigns import control
from campaigns.accounts import add_account, resolve_account_id, update_account
from campaigns.api_keys import Role, create_api_key
from campaigns.config import DEVELOPMENT, get_settings
from campaigns.db import connect, init_database
from campaigns.errors import NotFound
from campaigns.loader import LoadOptions, load_campaign_csv
from campaigns.reports import LoadReport
from campaigns.results_export import write_results_csv
from campaigns.states import CampaignState, DestinationStatus
from simulator.process import start_simulator
from workers.callbacks.account_setup import account_console_setup
from workers.entrypoints.cli_campaign_control import status_table
from workers.entrypoints.cli_follow import follow
from workers.entrypoints.local_stack import local_stack
from workers.providers.console_setup import ConsoleSetup

SAMPLE_CSV = Path(campaigns.__file__).resolve().parent / "data" / "sample.csv"
# Filled from each row's own columns (first_name, appointment_date in the sample CSV).
DEMO_MESSAGE = "Hello {first_name}, this is a reminder of your appointment on {appointment_date}."
DEMO_TOKEN = "demo-token"
DEMO_APPLICATION_ID = "7fc9698a-b04a-468b-9e8f-91238c0d0086"
DEMO_API_USER = "demo-api-user"
# provider -> (simulator account id, the account options it needs: see docs/PROVIDERS.md)
DEMO_ACCOUNTS: dict[str, tuple[str, dict[str, str]]] = {
    "plivo": ("MADEMO00000000000001", {}),
    "vobiz": ("MA_DEMO00001", {}),
    "tryvox": ("demo-tryvox", {}),
    "voipbin": ("demo-voipbin", {}),
    "bandwidth": ("9900000", {"api_username": DEMO_API_USER, "application_id": DEMO_APPLICATION_ID}),
}
DEMO_AUTH_ID = DEMO_ACCOUNTS["plivo"][0]
# `dialer demo --failover`'s two carriers (workers.entrypoints.demo_failover): the primary and its backup,
# of different providers. Named here, the one demo module that may name a provider.
FAILOVER_PRIMARY = "plivo"
FAILOVER_BACKUP = "tryvox"
# Destinations the carrier never saw a call for (the demo compares the rest with the carrier's count).
NOT_DIALED = frozenset({DestinationStatus.PENDING, DestinationStatus.CANCELLED, DestinationStatus.DNC})


@dataclass(frozen=True)
class DemoSettings:
    csv: Path = SAMPLE_CSV
    cps: int = 100
    rows: int | None = None  # load only the first N rows (the smoke test uses a few hundred)
    speed: float = 60.0  # simulator time scale: a 30 s call takes half a second
    workers: int = 2
    timeout_s: float = 900.0
    results_csv: Path = Path("demo-results.csv")
    provider: str = "plivo"
    retry_delay_s: int = 5  # a retried outcome's wait (real seconds; a real campaign waits minutes to hours)


def demo_auth_id(provider: str) -> str:
    if provider not in DEMO_ACCOUNTS:
        raise ValueError(f"--provider must be one of {', '.join(DEMO_ACCOUNTS)}, not {provider!r}")
    return DEMO_ACCOUNTS[provider][0]


def simulator_config(cps: int, provider: str = "plivo") -> dict[str, Any]:
    auth_id, options = DEMO_ACCOUNTS[provider][0], DEMO_ACCOUNTS[provider][1]
    account = {"provider": provider, "auth_id": auth_id, "auth_token": DEMO_TOKEN, "cps": cps,
               "max_concurrent": 2000, **options}
    if provider == "voipbin":
        # VoIPbin takes no ring timeout, so by default its simulator rings until the dialer hangs up at the
        # campaign's (real-time) ring timeout; the demo's carrier is the reading where the callee's side
        # gives up after 30 carrier seconds (docs/PROVIDERS.md), so its unanswered calls end at --speed.
        account["voipbin_ring_limit"] = "callee"
    return {
        "accounts": [account],
        "outcomes": {
            "answered": 70,
            "busy": 10,
            "no_answer": 10,
            "failed": 5,
            "machine": 5,
            "talk_time": [10, 90],
            "ring_time": [2, 15],
        },
        # Retry backoff is scaled by --speed: 60 carrier seconds is one real second, as a carrier would wait.
        "callbacks": {"attempts": 8, "backoff": 60.0, "backoff_factor": 2.0},
    }


def _demo_csv(csv: Path, rows: int | None, workdir: Path) -> Path:
    if rows is None:
        return csv
    lines = csv.read_text().splitlines()[: rows + 1]
    path = workdir / "demo-sample.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def load_sample(csv: Path, rows: int | None, workdir: Path, console: Console) -> LoadReport:
    """The sample (its first `rows` rows) loaded as a new draft campaign, and what the load reported."""
    report = load_campaign_csv(
        name=f"demo {time.strftime('%Y-%m-%d %H:%M:%S')}",
        source=_demo_csv(csv, rows, workdir),
        options=LoadOptions(default_region="US", message=DEMO_MESSAGE),
    )
    console.print(
        f"loaded {report.rows_loaded} of {report.rows_total} rows in {report.seconds:.1f}s; "
        f"rejected {report.rows_rejected} {report.rejects_by_reason}; message {DEMO_MESSAGE!r} "
        f"({report.rows_with_warnings} rows lack one of its variables)"
    )
    return report


def prepare_environment() -> None:
    """A demo is development by its nature (the simulator, the sample list, plain http), and says so itself
    for this process and every one it starts, as the default is production; an environment the caller
    named is kept, with the key that one needs."""
    os.environ.setdefault("DIALER_ENVIRONMENT", DEVELOPMENT)
    get_settings.cache_clear()
    init_database()


def supersede_earlier_runs(conn: psycopg.Connection, account_id: int) -> None:
    """An earlier demo stopped halfway must not share this run's budget: its campaign is paused."""
    conn.execute(
        f"UPDATE campaign SET state = '{CampaignState.PAUSED.value}', "
        "state_reason = 'superseded by a newer demo run' "
        f"WHERE account_id = %s AND state = '{CampaignState.RUNNING.value}'",
        (account_id,),
    )
    conn.commit()


def all_day_settings(account_id: int, retry_policy: dict[str, Any],
                     provider_options: dict[str, Any]) -> control.CampaignSettings:
    """The demo campaign's settings: its account and caller id, and a window of all day, so the demo runs
    whenever it is started."""
    return control.CampaignSettings(
        account_id=account_id,
        caller_id="+14155550100",
        window_start=clock_time(0),
        window_end=clock_time(0),  # equal ends: all day
        retry_policy=retry_policy,
        provider_options=provider_options,
    )


def print_console_link(api_url: str, campaign_id: int, console: Console) -> None:
    """A key for the console, and where to open it (the demo's API, and so the console, ends with it)."""
    with connect() as conn:
        console_key = create_api_key(conn, name=f"demo console {time.strftime('%H:%M:%S')}",
                                     role=Role.ADMIN).key
        conn.commit()
    console.print(f"console: {api_url}/ui/campaigns/{campaign_id} (sign in with the API key "
                  f"{console_key}; open while the demo runs)", soft_wrap=True, highlight=False)


def demo_account_name(provider: str) -> str:
    return "demo-simulator" if provider == "plivo" else f"demo-simulator-{provider}"


def demo_account(conn: psycopg.Connection, base_url: str, cps: int, provider: str = "plivo",
                 name: str | None = None) -> int:
    """The simulator account the demo dials through (`name`, by default the provider's demo account):
    updated if an earlier run made it, else added. Only "no such account" means a first run; any other error
    is the operator's to see."""
    name = name or demo_account_name(provider)
    auth_id, options = DEMO_ACCOUNTS[provider]
    try:
        account_id = resolve_account_id(conn, name)
        update_account(conn, account_id, base_url=base_url, cps=cps, auth_token=DEMO_TOKEN)
    except NotFound:  # first run: no such account yet
        conn.rollback()
        account_id = add_account(
            conn,
            name=name,
            provider=provider,
            auth_id=auth_id,
            auth_token=DEMO_TOKEN,
            cps=cps,
            max_concurrent=2000,
            base_url=base_url,
            options=dict(options),
        )
    conn.commit()
    return account_id


def outcome_table(campaign_id: int) -> Table:
    with connect() as conn:
        rows = conn.execute(
            """SELECT coalesce(outcome, '-'), count(*), round(avg(duration) FILTER (WHERE duration > 0), 1),
                      max(attempt_no)
               FROM call_attempt WHERE campaign_id = %s GROUP BY 1 ORDER BY 2 DESC""",
            (campaign_id,),
        ).fetchall()
    table = Table(title="attempts by outcome")
    for column in ("outcome", "attempts", "mean talk s", "max attempt no"):
        table.add_column(column, justify="left" if column == "outcome" else "right")
    for outcome, count, mean, max_no in rows:
        table.add_row(outcome, str(count), "-" if mean is None else str(mean), str(max_no))
    return table


def run_demo(settings: DemoSettings, console: Console | None = None) -> int:
    """Run the demo; returns the campaign id. Stops every process it started, whatever happens."""
    console = console or Console()
    auth_id = demo_auth_id(settings.provider)
    prepare_environment()
    config = simulator_config(settings.cps, settings.provider)
    with (
        start_simulator(config, speed=settings.speed, seed=7) as sim,
        local_stack(workers=settings.workers, threads=8) as stack,
    ):
        console.print(
            f"[bold]provider[/bold] {settings.provider}   "
            f"[bold]simulator[/bold] {sim.base_url}   [bold]api[/bold] {stack.api_url}   "
            f"[bold]workers[/bold] {settings.workers}   logs {stack.workdir}"
        )
        with connect() as conn:
            account_id = demo_account(conn, sim.base_url, settings.cps, settings.provider)
        setup = account_console_setup(settings.provider, account_id, None)
        show_console_setup(setup, console)
        console_values = {field.name: field.value for field in setup.fields}
        if "webhook_uri" in console_values:  # pasted into the simulated customer, as into VoIPbin's console
            sim.configure({"accounts": {auth_id: {"webhook_uri": console_values["webhook_uri"]}}})
        with connect() as conn:
            supersede_earlier_runs(conn, account_id)
        report = load_sample(settings.csv, settings.rows, stack.workdir, console)
        with connect() as conn:
            control.configure(
                conn,
                report.campaign_id,
                all_day_settings(
                    account_id,
                    # Short retries so the demo ends in minutes; a real campaign waits minutes to hours.
                    retry_policy={
                        outcome: {"delay_s": settings.retry_delay_s, "max_attempts": 2}
                        for outcome in ("busy", "no_answer", "failed")
                    },
                    provider_options={"ring_timeout": 30, "time_limit": 120},
                ),
            )
            control.start(conn, report.campaign_id)
        print_console_link(stack.api_url, report.campaign_id, console)
        started = time.monotonic()
        console.print(
            f"watch it: metrics {stack.api_url}/metrics (Authorization: Bearer <the key above>) · "
            f"Flower: `dialer flower` then http://127.0.0.1:5555 "
            f"(search campaign={report.campaign_id}) · `dialer campaign status {report.campaign_id} --follow`"
        )
        final = follow(report.campaign_id, console, timeout_s=settings.timeout_s).latest.status
        elapsed = time.monotonic() - started
        console.print(status_table(final))
        console.print(outcome_table(report.campaign_id))
        console.print(spoken_table(report.campaign_id))
        stats = sim.stats()["accounts"].get(auth_id, {})
        dialed = sum(v for k, v in final.by_status.items() if k not in NOT_DIALED)
        console.print(
            f"carrier saw {stats.get('accepted', 0)} calls for {dialed} destinations (the rest are "
            f"retries by policy), at most {stats.get('max_in_1s_window')} in any second (budget "
            f"{settings.cps}), {stats.get('rejected_429', 0)} 429s; campaign took {elapsed:.0f}s"
        )
        _write_results(report.campaign_id, settings.results_csv)
        console.print(
            f"results: {settings.results_csv.resolve()}  ·  `dialer campaign status {report.campaign_id}`"
            f"  ·  `dialer campaign results {report.campaign_id}`"
        )
        if final.state != CampaignState.COMPLETED:
            console.print(
                f"[red]campaign still {final.state} after {settings.timeout_s:.0f}s; logs in "
                f"{stack.workdir}[/red]"
            )
    return report.campaign_id


def show_console_setup(setup: ConsoleSetup, console: Console) -> None:
    """What a user of this provider would set in its console (`dialer account add` prints the same)."""
    console.print(f"[bold]{setup.provider} console setup[/bold] (what `dialer account add` tells a user):")
    for line in setup.lines(reveal_secrets=True):
        console.print(line.replace("NAME", demo_account_name(setup.provider)), markup=False, highlight=False,
                      soft_wrap=True)


def spoken_table(campaign_id: int, rows: int = 3) -> Table:
    """A few answered calls and the message each heard, rendered from its own CSV row."""
    with connect() as conn:
        heard = conn.execute(
            "SELECT d.number, a.spoken_text FROM call_attempt a "
            "JOIN destination d ON d.id = a.destination_id "
            "WHERE a.campaign_id = %s AND a.outcome = 'answered' ORDER BY a.id LIMIT %s",
            (campaign_id, rows),
        ).fetchall()
    table = Table("number", "heard", title="what answered calls heard")
    for number, text in heard:
        table.add_row(number, text or "")
    return table


def _write_results(campaign_id: int, path: Path) -> None:
    with connect() as conn, open(path, "w", newline="") as handle:
        write_results_csv(conn, campaign_id, handle)
