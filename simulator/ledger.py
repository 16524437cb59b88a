"""What happened, for tests and operators: every accepted call, 429, API error and callback attempt,
plus per-account counters (accepted, 429s, most calls in any 1 s window, most live calls, duplicates)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from simulator.limits import WindowMax


@dataclass(slots=True, eq=False)
class CallRecord:
    """One accepted destination: the carrier's live state of the call and its ledger entry."""

    provider: str
    account: str
    destination: str
    caller: str
    request_uuid: str
    call_uuid: str
    params: dict[str, Any]
    batch: str | None = None
    tag: str | None = None
    received_at: float = 0.0
    placed_at: float | None = None
    ringing_at: float | None = None
    answered_at: float | None = None
    hangup_at: float | None = None
    status: str = "queued"          # queued, ringing, answered, completed
    outcome: str | None = None      # answered, busy, no_answer, failed, machine
    machine: bool = False
    duration: int = 0               # carrier seconds (talk time before the speed scale)
    seq: int = 0
    hung_up_by_api: bool = False    # ended early through the provider's hang-up API
    arrival: str = "handler"        # received_at from the kernel's receive stamp or the handler's clock

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "provider": self.provider, "account": self.account,
            "destination": self.destination, "from": self.caller, "request_uuid": self.request_uuid,
            "call_uuid": self.call_uuid, "batch": self.batch, "tag": self.tag,
            "received_at": self.received_at, "placed_at": self.placed_at, "ringing_at": self.ringing_at,
            "answered_at": self.answered_at, "hangup_at": self.hangup_at, "status": self.status,
            "outcome": self.outcome, "machine": self.machine, "duration": self.duration,
            "hung_up_by_api": self.hung_up_by_api, "arrival": self.arrival,
        }

    def with_answer(self, placed_errors: dict[str, int]) -> dict[str, Any]:
        """to_dict plus `answered_status`: the 5xx the create request got although the call was placed."""
        row = self.to_dict()
        row["answered_status"] = placed_errors.get(self.request_uuid)
        return row


@dataclass(slots=True)
class AccountStats:
    provider: str
    accepted: int = 0
    requests_accepted: int = 0
    rejected_429: int = 0
    rejected_cps: int = 0
    rejected_concurrency: int = 0
    api_errors: int = 0
    live: int = 0
    max_concurrent_observed: int = 0
    window: WindowMax = field(default_factory=WindowMax)
    destinations: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    scheduled_faults: Counter[str] = field(default_factory=Counter)  # create requests answered by each kind

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider, "accepted": self.accepted, "requests_accepted": self.requests_accepted,
            "rejected_429": self.rejected_429, "rejected_cps": self.rejected_cps,
            "rejected_concurrency": self.rejected_concurrency, "api_errors": self.api_errors,
            "max_in_1s_window": self.window.max, "max_concurrent_observed": self.max_concurrent_observed,
            "live": self.live,
            "duplicate_dials": sum(c - 1 for c in self.destinations.values() if c > 1),
            "outcomes": dict(self.outcomes), "scheduled_faults": dict(self.scheduled_faults),
        }


class Ledger:
    """In-memory, append-only (until reset) record; `seq` orders every entry for `?since=`."""

    def __init__(self, arrival_mode: str = "handler") -> None:
        self.started_at = time.time()
        # How create requests' arrivals are stamped ("kernel" receive stamps, or the "handler"'s clock),
        # and how many were stamped each way (one without a kernel stamp falls back to the handler's).
        self.arrival_mode = arrival_mode
        self.arrivals: Counter[str] = Counter()
        self.seq = 0
        self.calls: list[CallRecord] = []
        self.rejections: list[dict[str, Any]] = []
        self.api_errors: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []
        self.placed_errors: dict[str, int] = {}  # request_uuid -> the 5xx answered although it was placed
        self.accounts: dict[str, AccountStats] = {}
        self.cb_delivered = 0
        self.cb_failed = 0
        self.cb_dropped = 0
        self.cb_duplicated = 0
        self.cb_reordered = 0
        self.cb_pending = 0
        self.cb_attempts = 0

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def account(self, auth_id: str, provider: str) -> AccountStats:
        stats = self.accounts.get(auth_id)
        if stats is None:
            stats = self.accounts[auth_id] = AccountStats(provider=provider)
        return stats

    def reset(self, live: dict[str, int]) -> None:
        """Forget everything; live calls keep their slots (they are still running)."""
        providers = {k: v.provider for k, v in self.accounts.items()}
        pending = self.cb_pending
        self.__init__(self.arrival_mode)  # type: ignore[misc]
        self.cb_pending = pending
        for auth_id, n in live.items():
            stats = self.account(auth_id, providers.get(auth_id, ""))
            stats.live = stats.max_concurrent_observed = n

    def touch(self, call: CallRecord) -> None:
        call.seq = self._next()

    def arrival_counted(self, source: str) -> None:
        self.arrivals[source] += 1

    def call_received(self, calls: list[CallRecord], mono: float) -> None:
        if not calls:
            return
        first = calls[0]
        stats = self.account(first.account, first.provider)
        stats.requests_accepted += 1
        stats.accepted += len(calls)
        stats.window.add(mono, len(calls))
        stats.live += len(calls)
        stats.max_concurrent_observed = max(stats.max_concurrent_observed, stats.live)
        for call in calls:
            call.seq = self._next()
            stats.destinations[call.destination] += 1
            self.calls.append(call)

    def call_ended(self, call: CallRecord) -> None:
        call.seq = self._next()
        stats = self.account(call.account, call.provider)
        stats.live -= 1
        stats.outcomes[call.outcome or "unknown"] += 1

    def rejected(self, auth_id: str, provider: str, reason: str, n: int, retry_after: float | None) -> None:
        stats = self.account(auth_id, provider)
        stats.rejected_429 += 1
        if reason == "cps":
            stats.rejected_cps += 1
        else:
            stats.rejected_concurrency += 1
        self.rejections.append({"seq": self._next(), "time": time.time(), "account": auth_id,
                                "provider": provider, "status": 429, "reason": reason,
                                "destinations": n, "retry_after": retry_after})

    def api_error(self, auth_id: str | None, provider: str, status: int, error: str, path: str,
                  fault: str | None = None) -> None:
        """An error answer; `fault` names the scheduled fault that caused it (None: any other cause)."""
        if auth_id is not None:
            stats = self.account(auth_id, provider)
            stats.api_errors += 1
            if fault is not None:
                stats.scheduled_faults[fault] += 1
        self.api_errors.append({"seq": self._next(), "time": time.time(), "account": auth_id,
                                "provider": provider, "status": status, "error": error, "path": path,
                                "fault": fault})

    def placed_but_errored(self, request_uuids: list[str], status: int) -> None:
        """These calls were placed, but the create request was answered `status` (the placed-5xx fault)."""
        for request_uuid in request_uuids:
            self.placed_errors[request_uuid] = status

    def callback_attempt(self, call: CallRecord | None, kind: str, url: str, attempt: int,
                         status: int | None, error: str | None, fault: str | None = None) -> None:
        self.cb_attempts += 1
        self.callbacks.append({
            "seq": self._next(), "time": time.time(), "account": call.account if call else None,
            "call_uuid": call.call_uuid if call else None, "kind": kind, "url": url, "attempt": attempt,
            "status": status, "error": error, "fault": fault,
        })

    def snapshot(self, since: int = 0) -> dict[str, Any]:
        def newer(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [r for r in rows if r["seq"] > since]

        return {
            "calls": [c.with_answer(self.placed_errors) for c in self.calls if c.seq > since],
            "rejections": newer(self.rejections),
            "api_errors": newer(self.api_errors),
            "callbacks": newer(self.callbacks),
            "next_since": self.seq,
        }

    def stats(self) -> dict[str, Any]:
        accounts = {k: v.to_dict() for k, v in self.accounts.items()}
        return {
            "uptime": time.time() - self.started_at,
            "accounts": accounts,
            "totals": {
                "accepted": sum(a["accepted"] for a in accounts.values()),
                "rejected_429": sum(a["rejected_429"] for a in accounts.values()),
                "api_errors": len(self.api_errors),
                "duplicate_dials": sum(a["duplicate_dials"] for a in accounts.values()),
                "live": sum(a["live"] for a in accounts.values()),
                "placed_but_5xx": len(self.placed_errors),
            },
            "arrivals": {"mode": self.arrival_mode, "kernel": self.arrivals["kernel"],
                         "handler": self.arrivals["handler"]},
            "callbacks": {
                "delivered": self.cb_delivered, "failed": self.cb_failed, "pending": self.cb_pending,
                "dropped": self.cb_dropped, "duplicated": self.cb_duplicated,
                "reordered": self.cb_reordered, "attempts": self.cb_attempts,
            },
        }
