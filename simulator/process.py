"""The simulator as a subprocess of another program (the demo, benchmarks, tests): start it on a free port,
read its address, talk to its /_sim control endpoints, stop it."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent


class RunningSimulator:
    """A simulator subprocess: its base URL and the /_sim control endpoints."""

    def __init__(self, process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.log_path = log_path
        self.client = httpx.Client(base_url=base_url, timeout=10.0)

    def ledger(self, since: int = 0) -> dict[str, Any]:
        """{"calls": [...], "rejections": [...], "api_errors": [...], "callbacks": [...], "next_since": n}"""
        response = self.client.get("/_sim/ledger", params={"since": since}).raise_for_status()
        ledger: dict[str, Any] = response.json()
        return ledger

    def stats(self) -> dict[str, Any]:
        """{"accounts": {auth_id: {...}}, "totals": {...}, "callbacks": {...}, "uptime": s}"""
        stats: dict[str, Any] = self.client.get("/_sim/stats").raise_for_status().json()
        return stats

    def reset(self) -> None:
        """Clear the ledger and counters and refill the CPS buckets (live calls keep running)."""
        self.client.post("/_sim/reset").raise_for_status()

    def configure(self, patch: dict[str, Any]) -> dict[str, Any]:
        """Patch faults/outcomes/callbacks/accounts at runtime; returns the whole config."""
        config: dict[str, Any] = self.client.post("/_sim/config", json=patch).raise_for_status().json()
        return config

    def refuse_connections(self, seconds: float) -> None:
        """The carrier becomes unreachable (ECONNREFUSED) for `seconds`, then listens again."""
        self.client.post("/_sim/outage", json={"seconds": seconds}).raise_for_status()

    def schedule_faults(self, faults: list[dict[str, Any]]) -> dict[str, Any]:
        """Add timed per-account faults, e.g. [{"account": auth_id, "fault": "401", "start_in": 2,
        "seconds": 5}]; fault is one of "401", "402", "5xx", "placed_5xx", "refused" ("refused" closes
        this whole simulator's listener). Times are real seconds from now, not scaled by --speed. Returns
        the schedule: {"now", "faults": [{account, fault, start, end, start_wall, end_wall, state}]}.
        An invalid entry raises httpx.HTTPStatusError (400, the field at fault in its body)."""
        response = self.client.post("/_sim/faults/schedule", json=faults).raise_for_status()
        listing: dict[str, Any] = response.json()
        return listing

    def scheduled_faults(self) -> dict[str, Any]:
        """The schedule as schedule_faults returns it."""
        listing: dict[str, Any] = self.client.get("/_sim/faults/schedule").raise_for_status().json()
        return listing

    def clear_faults(self) -> None:
        """Forget every scheduled fault (a refusal already under way runs its course)."""
        self.client.delete("/_sim/faults/schedule").raise_for_status()

    def wait_idle(self, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until no call is live and no callback is pending; return the stats then."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["totals"]["live"] == 0 and stats["callbacks"]["pending"] == 0:
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"not idle after {timeout}s: {stats['totals']} {stats['callbacks']}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def own_cores(self, nice: int = -15) -> int:
        """Stand for a carrier on its own hardware when it shares a small host with the dialer: run at this
        nice value if the OS allows it (CAP_SYS_NICE), so the dialer's load does not delay the instants it
        counts arrivals at. Its nice value afterwards."""
        try:
            os.setpriority(os.PRIO_PROCESS, self.process.pid, nice)
        except PermissionError:
            pass  # the simulator keeps the caller's priority
        return os.getpriority(os.PRIO_PROCESS, self.process.pid)

    def stop(self) -> None:
        """SIGTERM and wait (the simulator writes --ledger-out on the way out)."""
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def start_simulator(config: dict[str, Any] | None = None, *, speed: float = 1.0, seed: int = 1,
                    ledger_out: str | Path | None = None,
                    ready_timeout: float = 20.0) -> Iterator[RunningSimulator]:
    """Start `python -m simulator` on a free port with `config` (None: the default accounts)."""
    workdir = Path(tempfile.mkdtemp(prefix="sim-"))
    cmd = [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", "0",
           "--speed", str(speed), "--seed", str(seed)]
    if config is not None:
        config_path = workdir / "config.json"
        config_path.write_text(json.dumps(config))
        cmd += ["--config", str(config_path)]
    if ledger_out is not None:
        cmd += ["--ledger-out", str(ledger_out)]
    log_path = workdir / "simulator.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=log)
    assert process.stdout is not None
    deadline = time.monotonic() + ready_timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, left))
        chunk = os.read(process.stdout.fileno(), 1) if ready else b""
        if not chunk:
            process.kill()
            raise RuntimeError(f"simulator did not start: {log_path.read_text(errors='replace')[-2000:]}")
        line += chunk
    base_url = line.decode().strip().rsplit(" ", 1)[-1]
    sim = RunningSimulator(process, base_url, log_path)
    try:
        yield sim
    finally:
        sim.stop()
