"""Callback throughput of ONE `dialer api` process (uvicorn, 1 worker): hangups stored and applied per second.

    python -m bench.callbacks_bench --calls 20000 --concurrency 64

Prepares N sent attempts in a fresh database (destinations + attempts with request_uuids, inserted
directly), starts the API as a subprocess, and fires one correctly signed Plivo hangup per attempt from a
separate load process (keep-alive raw HTTP client, C concurrent senders, retrying non-2xx as a carrier
does). Reports the stored rate (2xx answers, each only after its commit), the applied rate (attempts
completed), p50/p99 of the request latency and of receive-to-applied (received_at to applied_at: 0 for an
event applied in the transaction that stored it, whose receive-to-applied time is then bounded by its
request latency), the CPU each process spent per
callback (API, load, every Postgres process on the host, Redis: read from /proc, so on a shared machine the
Postgres figure includes other users' queries), and checks that none is lost.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-plivo-token"


def _cpu_s(pids: Sequence[int]) -> float:
    """User + system CPU seconds of these processes so far (0 for one that is gone)."""
    total = 0
    for pid in pids:
        try:
            fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def _pids_named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _cpu_by_process(api_pid: int) -> dict[str, float]:
    return {"api": _cpu_s([api_pid]), "postgres": _cpu_s(_pids_named("postgres")),
            "redis": _cpu_s(_pids_named("redis-server"))}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _setup_env(admin_url: str, redis_url: str) -> str:
    tag = secrets.token_hex(4)
    base = admin_url.rsplit("/", 1)[0]
    os.environ["DIALER_DATABASE_URL"] = (
        f"{base.replace('postgresql://', 'postgresql+psycopg://')}/dialer_bench_{tag}"
    )
    os.environ["DIALER_REDIS_URL"] = redis_url
    os.environ["DIALER_REDIS_PREFIX"] = f"dialer-bench-{tag}"
    os.environ.setdefault("DIALER_SECRET_KEY", f"bench-secret-for-benchmarks-only-{tag}")
    os.environ.setdefault("DIALER_ENVIRONMENT", "development")  # said explicitly: unset is production
    return f"dialer_bench_{tag}"


def _prepare(url: str, n: int) -> tuple[int, list[tuple[str, str, str]]]:
    """An account, a running campaign, N destinations each with one `sent` attempt; (account, [(number,
    request_uuid, call_uuid)])."""
    import psycopg

    import workers.providers.registry  # noqa: F401  (the adapters declare the provider kinds)
    from campaigns.accounts import add_account

    with psycopg.connect(url) as conn:
        account_id = add_account(
            conn,
            name="bench",
            provider="plivo",
            auth_id="MABENCH",
            auth_token=TOKEN,
            cps=1000,
            max_concurrent=10**6,
            base_url="http://127.0.0.1:9",
        )
        row = conn.execute(
            """INSERT INTO campaign (name, account_id, caller_id, state, retry_policy)
               VALUES ('bench', %s, '+14155550100', 'running', '{"busy": {"delay_s": 0, "max_attempts": 1}}')
               RETURNING id""",
            (account_id,),
        ).fetchone()
        assert row is not None
        campaign_id = row[0]
        conn.execute(
            """INSERT INTO destination (campaign_id, line_no, number, timezone, status, attempts_made)
               SELECT %s, g, '+1212' || lpad(g::text, 7, '0'), 'America/New_York', 'dialing', 1
               FROM generate_series(1, %s) g""",
            (campaign_id, n),
        )
        conn.execute(
            """INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, batch_id,
                                         status, request_uuid, lease_expires_at, sent_at)
               SELECT id, campaign_id, %s, 1, gen_random_uuid(), 'sent', gen_random_uuid()::text,
                      now() + interval '1 hour', now()
               FROM destination WHERE campaign_id = %s""",
            (account_id, campaign_id),
        )
        rows = conn.execute(
            """SELECT d.number, a.request_uuid
               FROM call_attempt a JOIN destination d ON d.id = a.destination_id
               WHERE a.campaign_id = %s ORDER BY a.id""",
            (campaign_id,),
        ).fetchall()
        conn.commit()
    return account_id, [(number, request_uuid, str(uuid.uuid4())) for number, request_uuid in rows]


def _requests(
    api_url: str, account_id: int, calls: list[tuple[str, str, str]]
) -> list[tuple[str, bytes, dict[str, str]]]:
    """One signed Plivo hangup per call, as Plivo sends it (form body, V3 signature and nonce)."""
    from workers.callbacks import tickets
    from workers.providers.signatures import plivo_v3_signature

    # Every call's callback URL carries its ticket (the receiver refuses one without), as the dialer's do.
    ticket = tickets.issue("plivo", account_id, "hangup", None, int(time.time()) + 3600)
    url = f"{api_url}/callbacks/plivo/{account_id}/hangup/{ticket}"
    out = []
    for i, (number, request_uuid, call_uuid) in enumerate(calls):
        outcome = ("completed", "4000", "17") if i % 5 else ("busy", "3010", "0")
        form = {
            "From": "14155550100",
            "To": number.lstrip("+"),
            "RequestUUID": request_uuid,
            "ALegRequestUUID": request_uuid,
            "CallUUID": call_uuid,
            "ALegUUID": call_uuid,
            "Direction": "outbound",
            "Event": "Hangup",
            "CallStatus": outcome[0],
            "HangupCause": "NORMAL_CLEARING",
            "HangupCauseName": "Normal Hangup",
            "HangupCauseCode": outcome[1],
            "HangupSource": "Callee",
            "Duration": outcome[2],
            "BillDuration": "60" if outcome[2] != "0" else "0",
            "StartTime": "2025-01-01 10:00:00",
            "EndTime": "2025-01-01 10:00:30",
            "TotalCost": "0.00000",
            "BillRate": "0.00000",
        }
        if outcome[2] != "0":
            form["AnswerTime"] = "2025-01-01 10:00:05"
        nonce = str(secrets.randbits(63)).zfill(20)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Plivo-Signature-V3-Nonce": nonce,
            "X-Plivo-Signature-V3": plivo_v3_signature(TOKEN, "POST", url, nonce, form),
        }
        out.append((url, urlencode(form).encode(), headers))
    return out


async def _fire(requests: list[tuple[str, bytes, dict[str, str]]], concurrency: int) -> dict[str, Any]:
    from simulator.http_client import HttpPool

    pool = HttpPool(max_idle_per_host=concurrency * 2)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    index = 0
    done_at: list[float] = []

    async def sender() -> None:
        nonlocal index
        while index < len(requests):
            url, body, headers = requests[index]
            index += 1
            for attempt in range(20):  # a carrier retries non-2xx; count what it saw
                t0 = time.perf_counter()
                try:
                    status = await pool.request("POST", url, body, headers, 30.0)
                except Exception as exc:  # transport error: retry like a carrier
                    status = f"error {type(exc).__name__}"  # type: ignore[assignment]
                if status in (200, 204):
                    latencies.append(time.perf_counter() - t0)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status in (200, 204):
                    done_at.append(time.time())
                    break
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))

    start, cpu_start = time.time(), time.process_time()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    pool.close()
    return {
        "start": start,
        "end": time.time(),
        "latencies": latencies,
        "statuses": statuses,
        "acked": len(done_at),
        "cpu_s": time.process_time() - cpu_start,
    }


def _load_process(requests: list[tuple[str, bytes, dict[str, str]]], concurrency: int, out: Any) -> None:
    out.send(asyncio.run(_fire(requests, concurrency)))
    out.close()


def _one(conn: Any, sql: str) -> tuple[Any, ...]:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return tuple(row)


def run(n: int, concurrency: int, admin_url: str, redis_url: str, profile: str | None,
        profile_gil: bool = False) -> dict[str, Any]:
    db_name = _setup_env(admin_url, redis_url)
    from workers.entrypoints.local_stack import free_port, wait_http

    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    os.environ["DIALER_PUBLIC_URL"] = api_url
    import psycopg

    from campaigns.config import get_settings
    from campaigns.db import init_database

    get_settings.cache_clear()
    url = get_settings().psycopg_url
    init_database(url)
    api: subprocess.Popen[bytes] | None = None
    spy: subprocess.Popen[bytes] | None = None
    try:
        account_id, calls = _prepare(url, n)
        requests = _requests(api_url, account_id, calls)
        log = open(Path(tempfile.gettempdir()) / f"callbacks-bench-api-{port}.log", "wb")
        api = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "workers.entrypoints.api.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            env=os.environ.copy(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_http(f"{api_url}/health", timeout=30.0)
        if profile:
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "-o",
                    profile,
                    "-f",
                    "raw",
                    "-p",
                    str(api.pid),
                    "--rate",
                    "200",
                    "--nonblocking",
                    *(["--gil"] if profile_gil else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        receiver, sender = mp.Pipe(duplex=False)
        load = mp.get_context("fork").Process(target=_load_process, args=(requests, concurrency, sender))
        load.start()
        cpu_before = _cpu_by_process(api.pid)
        with psycopg.connect(url, autocommit=True) as conn:
            deadline = time.time() + max(120.0, n / 100)
            fired: dict[str, Any] | None = None
            while time.time() < deadline:
                # Take the load process's report as soon as it is sent: it is bigger than a pipe's buffer,
                # so the sender cannot exit before it is read.
                if fired is None and receiver.poll(0):
                    fired = receiver.recv()
                if (
                    fired is not None
                    and _one(conn, "SELECT count(*) FROM call_attempt WHERE status = 'completed'")[0] >= n
                ):
                    break
                time.sleep(0.2)
            cpu_after = _cpu_by_process(api.pid)
            if fired is None:
                fired = receiver.recv() if receiver.poll(60) else {}
            load.join(10)
            stored, applied = _one(
                conn, "SELECT count(*), count(applied_at) FROM call_event WHERE kind = 'hangup'"
            )
            lags = [
                float(r[0])
                for r in conn.execute(
                    "SELECT extract(epoch FROM applied_at - received_at) FROM call_event "
                    "WHERE applied_at IS NOT NULL"
                )
            ]
            destinations: dict[str, int] = dict(
                conn.execute("SELECT status, count(*) FROM destination GROUP BY 1").fetchall()
            )
            first_received, last_received, last_applied = _one(
                conn,
                "SELECT extract(epoch FROM min(received_at)), extract(epoch FROM max(received_at)), "
                "extract(epoch FROM max(applied_at)) FROM call_event",
            )
    finally:
        if api is not None:  # py-spy writes its profile once the API exits
            api.terminate()
            api.wait(timeout=15)
        if spy is not None:
            try:
                spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    if not fired:
        raise RuntimeError("the load process reported nothing")
    elapsed_store = max(1e-9, fired["end"] - fired["start"])
    elapsed_apply = max(1e-9, float(last_applied or 0) - float(first_received or 0))
    latencies = fired.get("latencies", [])
    return {
        "calls": n,
        "concurrency": concurrency,
        "acked": fired.get("acked"),
        "statuses": fired.get("statuses"),
        "stored": int(stored),
        "applied": int(applied),
        "destinations": destinations,
        "stored_per_s": round(fired.get("acked", 0) / elapsed_store, 1),
        "receive_span_s": round(float(last_received or 0) - float(first_received or 0), 2),
        "applied_per_s": round(int(applied) / elapsed_apply, 1),
        "latency_p50_ms": round(_percentile(latencies, 0.50) * 1000, 2),
        "latency_p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "applied_lag_p50_ms": round(_percentile(lags, 0.50) * 1000, 1),
        "applied_lag_p99_ms": round(_percentile(lags, 0.99) * 1000, 1),
        "lost": n - int(applied),
        "cpu_ms_per_callback": {
            **{name: round(1000 * (cpu_after[name] - cpu_before[name]) / n, 3) for name in cpu_before},
            "load": round(1000 * fired.get("cpu_s", 0.0) / n, 3)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("DIALER_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("DIALER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--profile", help="write a py-spy profile (raw folded stacks) of the API here")
    parser.add_argument("--profile-gil", action="store_true",
                        help="sample only the thread holding the GIL: where the API's Python CPU goes, not "
                        "its threads' waits (which a busy machine makes look like work)")
    args = parser.parse_args(argv)
    result = run(args.calls, args.concurrency, args.admin_url, args.redis_url, args.profile, args.profile_gil)
    for key, value in result.items():
        print(f"{key:>20}: {value}")
    ok = result["lost"] == 0 and result["stored"] == args.calls
    print("OK: none lost" if ok else "FAIL: events lost")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
