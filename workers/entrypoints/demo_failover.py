"""`dialer demo --failover`: a campaign's primary carrier fails mid-campaign and its backup takes over, on
this machine (issue 23, scenario 1). Two carriers, each a simulator process of its own (refusing connections
closes a simulator's whole listener, so the failing carrier must be alone in its process): the primary
Plivo, the backup TryVox, an account on each, a campaign dialing the sample through the primary with the
backup as its fallback. Once the primary has placed a few seconds' worth of calls its simulator refuses
connections for a while, then listens again; the circuit cool-down of this demo's own worker processes is
short (DIALER_CIRCUIT_COOLDOWN_S), so the primary is probed and takes the campaign back before it ends.

A line a second shows each carrier's calls and each account's circuit; every change of a circuit is printed
as it happens; the summary (workers.entrypoints.failover_report) says when the breaker opened, how soon the
backup took over, whether anyone was dialed twice (both carriers' ledgers), the 429s, and the primary's
calls after it recovered. Everything started is stopped again, whatever happens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from rich.console import Console

from campaigns import circuits, control
from campaigns.account_health import AccountHealth
from campaigns.account_list_rules import AccountsChange, NamedAccount
from campaigns.db import connect
from campaigns.states import CampaignState, CircuitState
from simulator.process import RunningSimulator, start_simulator
from workers.entrypoints.demo import (
    DEMO_ACCOUNTS,
    FAILOVER_BACKUP,
    FAILOVER_PRIMARY,
    SAMPLE_CSV,
    all_day_settings,
    demo_account,
    load_sample,
    outcome_table,
    prepare_environment,
    print_console_link,
    simulator_config,
    supersede_earlier_runs,
)
from workers.entrypoints.failover_report import Carrier, Change, FailoverSummary, summarise, summary_lines
from workers.entrypoints.local_stack import local_stack

COOLDOWN_ENV = "DIALER_CIRCUIT_COOLDOWN_S"
POLL_S = 0.25  # how often the demo looks (the fault starts this soon after the primary's calls suffice)
LINE_S = 1.0  # a line of the live view this often
REASON_SHOWN = 60  # characters of a circuit's reason on the live view's lines
# Each destination is dialed at most once by policy, so a number on both ledgers is a double dial; a short
# ring timeout and evidence margin settle a send cut by the refusal in 18 s rather than the default 90 s.
ONE_ATTEMPT = {outcome: {"delay_s": 0, "max_attempts": 1} for outcome in ("busy", "no_answer", "failed")}
OPTIONS = {"ring_timeout": 15, "time_limit": 120, "evidence_margin_s": 3}


@dataclass(frozen=True)
class FailoverSettings:
    csv: Path = SAMPLE_CSV
    rows: int = 500  # at 20 CPS, about 25 s of dialing
    cps: int = 20  # each carrier's
    speed: float = 60.0  # simulator time scale, as `dialer demo`'s
    workers: int = 2
    fail_after_s: float = 3.0  # the primary fails once it has placed this many seconds' worth of calls
    refused_s: float = 6.0  # how long it refuses connections
    cooldown_s: float = 8.0  # the circuit cool-down of this demo's workers (the default is 30 s)
    timeout_s: float = 300.0
    primary: str = FAILOVER_PRIMARY
    backup: str = FAILOVER_BACKUP


@dataclass
class DemoCarrier:
    """A carrier of the demo: its simulator, the simulator's account id, ours, and how the demo names it."""

    sim: RunningSimulator
    auth_id: str
    account_id: int
    label: str
    last_count: int = 0

    def count(self) -> int | None:
        """Calls the carrier has placed, as it counts them; None while it refuses connections."""
        try:
            stats = self.sim.stats()["accounts"].get(self.auth_id, {})
        except httpx.HTTPError:
            return None
        self.last_count = int(stats.get("accepted", 0))
        return self.last_count

    def calls(self) -> list[dict[str, Any]]:
        return [c for c in self.sim.ledger()["calls"] if c["account"] == self.auth_id]

    def throttled(self) -> int:
        return int(self.sim.stats()["accounts"].get(self.auth_id, {}).get("rejected_429", 0))


@dataclass(frozen=True)
class FailoverRun:
    campaign_id: int
    summary: FailoverSummary | None  # None: the campaign ended before the primary failed


def run_failover_demo(settings: FailoverSettings, console: Console | None = None) -> FailoverRun:
    """Run the demo; returns its campaign and summary."""
    console = console or Console()
    prepare_environment()
    with (
        start_simulator(simulator_config(settings.cps, settings.primary), speed=settings.speed,
                        seed=7) as primary_sim,
        start_simulator(simulator_config(settings.cps, settings.backup), speed=settings.speed,
                        seed=8) as backup_sim,
        local_stack(workers=settings.workers, threads=8,
                    extra_env={COOLDOWN_ENV: f"{settings.cooldown_s:g}"}) as stack,
    ):
        with connect() as conn:
            primary = _carrier(conn, primary_sim, settings.primary, "primary", settings.cps)
            backup = _carrier(conn, backup_sim, settings.backup, "backup", settings.cps)
        console.print(
            f"[bold]primary[/bold] {primary.label} {primary_sim.base_url}   "
            f"[bold]backup[/bold] {backup.label} {backup_sim.base_url}   [bold]api[/bold] {stack.api_url}   "
            f"each {settings.cps} CPS   circuit cool-down {settings.cooldown_s:g} s for this demo's workers "
            f"({COOLDOWN_ENV}; the default is 30 s)   logs {stack.workdir}", highlight=False
        )
        report = load_sample(settings.csv, settings.rows, stack.workdir, console)
        campaign_id = report.campaign_id
        with connect() as conn:
            fallback = NamedAccount(backup.account_id, backup.label, "--fallback-account")
            control.configure(conn, campaign_id, all_day_settings(primary.account_id, ONE_ATTEMPT, OPTIONS),
                              AccountsChange(fallbacks=[fallback]))
            control.start(conn, campaign_id)
        print_console_link(stack.api_url, campaign_id, console)
        console.print(f"campaign {campaign_id}: {report.rows_loaded} destinations through {primary.label}, "
                      f"{backup.label} as its fallback (failover routing); each dialed at most once by "
                      "policy")
        fault = _watch(campaign_id, primary, backup, settings, console)
        console.print(outcome_table(campaign_id))
        if fault is None:
            console.print("[red]the campaign ended before the primary failed: dial more rows[/red]")
            return FailoverRun(campaign_id, None)
        summary = _summary(primary, backup, fault)
    console.print("[bold]failover summary[/bold]")
    ran_with = {COOLDOWN_ENV: f"{settings.cooldown_s:g}", "cps": str(settings.cps),
                "rows": str(settings.rows), "fail_after_s": f"{settings.fail_after_s:g}"}
    for line in summary_lines(summary, primary.label, backup.label, ran_with):
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    return FailoverRun(campaign_id, summary)


def _carrier(conn: psycopg.Connection, sim: RunningSimulator, provider: str, role: str,
             cps: int) -> DemoCarrier:
    """Our account on this carrier's simulator, its circuit closed (an earlier run may have left it open) and
    an earlier demo's campaign on it paused."""
    label = f"{provider} ({role})"
    account_id = demo_account(conn, sim.base_url, cps, provider, name=f"demo-failover-{role}")
    supersede_earlier_runs(conn, account_id)
    if circuits.enable(conn, account_id):
        conn.commit()
    return DemoCarrier(sim, DEMO_ACCOUNTS[provider][0], account_id, label)


def _watch(campaign_id: int, primary: DemoCarrier, backup: DemoCarrier, settings: FailoverSettings,
           console: Console) -> dict[str, Any] | None:
    """The live view until the campaign leaves `running` and the primary listens again; fails the primary
    once it has placed its share. Returns the fault window as the simulator scheduled it (None: never)."""
    started = time.time()
    since = datetime.now().astimezone()
    fail_after = int(settings.fail_after_s * settings.cps)
    carriers = {primary.account_id: primary, backup.account_id: backup}
    fault: dict[str, Any] | None = None
    shown: set[tuple[int, datetime]] = set()
    next_line = started
    with connect(autocommit=True) as conn:
        while True:
            now = time.time()
            counts = {c.account_id: c.count() for c in carriers.values()}
            if fault is None and (counts[primary.account_id] or 0) >= fail_after:
                fault = _refuse(primary, settings.refused_s)
                console.print(f"[bold red]t+{now - started:4.1f}s  {primary.label} refuses connections for "
                              f"{settings.refused_s:g} s[/bold red] (after {counts[primary.account_id]} "
                              "calls)", soft_wrap=True)
            for account_id, carrier in carriers.items():
                for change in reversed(circuits.changes_of(conn, account_id, limit=20)):
                    if change.changed_at >= since and (account_id, change.changed_at) not in shown:
                        shown.add((account_id, change.changed_at))
                        why = ": ".join(p for p in (change.cause, change.reason) if p)
                        console.print(f"[bold]t+{change.changed_at.timestamp() - started:4.1f}s  "
                                      f"{carrier.label} circuit → {change.state.value}[/bold]"
                                      + (f" ({why})" if why else ""), highlight=False, soft_wrap=True)
            status = control.status(conn, campaign_id)
            if now >= next_line:
                next_line += LINE_S
                console.print(_line(now - started, status, carriers, counts), highlight=False, soft_wrap=True)
            recovered = fault is None or now > fault["end_wall"] + 0.5
            if status.state != CampaignState.RUNNING and recovered:
                return fault
            if now - started > settings.timeout_s:
                console.print(f"[red]campaign still {status.state} after {settings.timeout_s:g} s[/red]")
                return fault
            time.sleep(POLL_S)


def _refuse(carrier: DemoCarrier, seconds: float) -> dict[str, Any]:
    """The carrier's simulator refuses connections from now for `seconds`; the window as it scheduled it."""
    listing = carrier.sim.schedule_faults([{"account": carrier.auth_id, "fault": "refused", "start_in": 0,
                                            "seconds": seconds}])
    window: dict[str, Any] = listing["faults"][-1]
    return window


def _line(elapsed: float, status: control.CampaignStatus, carriers: dict[int, DemoCarrier],
          counts: dict[int, int | None]) -> str:
    total = sum(status.by_status.values())
    parts = [f"t+{elapsed:4.1f}s  done {status.finished}/{total}"]
    for account in status.accounts:
        carrier = carriers.get(account.account_id)
        if carrier is None:
            continue
        count = counts.get(account.account_id)
        calls = f"{carrier.last_count} calls, refusing connections" if count is None else f"{count} calls"
        parts.append(f"{carrier.label}: {calls}, circuit {_circuit(account)}")
    parts.append(f"429s {status.throttled}")
    return "  │  ".join(parts)


def _circuit(account: AccountHealth) -> str:
    """Its state and, unless closed, why, cut short: the change lines above say it in full."""
    if account.state == CircuitState.CLOSED:
        return "closed"
    why = ": ".join(p for p in (account.cause, account.reason) if p)
    if len(why) > REASON_SHOWN:
        why = why[: REASON_SHOWN - 1] + "…"
    return f"{account.state.value} ({why})" if why else account.state.value


def _summary(primary: DemoCarrier, backup: DemoCarrier, fault: dict[str, Any]) -> FailoverSummary:
    """From both carriers' ledgers (the primary's read once it listens again) and the primary's changes."""
    deadline = time.monotonic() + 10.0
    while primary.count() is None and time.monotonic() < deadline:
        time.sleep(POLL_S)
    on_carrier = []
    for carrier in (primary, backup):
        calls = carrier.calls()
        on_carrier.append(Carrier(carrier.label, [c["received_at"] for c in calls],
                                  [c["destination"] for c in calls], carrier.throttled()))
    with connect() as conn:
        changes = [Change(c.state.value, c.reason, c.changed_at.timestamp())
                   for c in reversed(circuits.changes_of(conn, primary.account_id, limit=20))
                   if c.changed_at.timestamp() >= fault["start_wall"] - 1.0]
    start, end = fault["start_wall"], fault["end_wall"]
    return summarise(on_carrier[0], on_carrier[1], start, end - start, changes)
