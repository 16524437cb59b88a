"""The callbacks benchmark with issue 22's outbox in a chosen state: what the webhook triggers cost on the
results path, where each hangup makes an attempt (and its destination) final.

    python -m bench.webhooks_outbox_bench --outbox none         # no endpoint: each trigger finds none
    python -m bench.webhooks_outbox_bench --outbox account      # one account-level endpoint: each final
                                                                # attempt and destination writes a row
    python -m bench.webhooks_outbox_bench --outbox no-triggers  # the webhook triggers dropped

Everything else is bench.callbacks_bench's (--calls 20000 --concurrency 64 by default, a fresh database per
run, dropped at the end). The delivery worker does not run: the cost measured is the insert in the apply
transaction. Prints the load average at the start and the end, and the outbox rows the run wrote.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from bench import callbacks_bench

TRIGGERS = {
    "webhook_attempt_finished": "call_attempt",
    "webhook_destination_final": "destination",
    "webhook_run_started": "campaign_run",
    "webhook_run_finished": "campaign_run",
    "webhook_campaign_changed": "campaign",
}


def _patch(outbox: str, counts: dict[str, Any]) -> None:
    prepare, one = callbacks_bench._prepare, callbacks_bench._one

    def prepared(url: str, n: int) -> tuple[int, list[tuple[str, str, str]]]:
        import psycopg

        account_id, calls = prepare(url, n)
        with psycopg.connect(url) as conn:
            if outbox == "account":
                # The secret is not read here (no delivery worker runs); the row only has to exist.
                conn.execute(
                    "INSERT INTO webhook_endpoint (account_id, url, secret_encrypted) VALUES (%s, %s, %s)",
                    (account_id, "http://127.0.0.1:9/webhooks", "bench-not-a-secret"),
                )
            elif outbox == "no-triggers":
                for trigger, table in TRIGGERS.items():
                    conn.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
            conn.commit()
        return account_id, calls

    def counted(conn: Any, sql: str) -> tuple[Any, ...]:
        # The run's last queries, before its database is dropped: read the outbox too.
        if "FROM call_event WHERE kind = 'hangup'" in sql:
            exists = one(conn, "SELECT to_regclass('webhook_delivery') IS NOT NULL")[0]
            counts["outbox_rows"] = (
                dict(conn.execute("SELECT event_type, count(*) FROM webhook_delivery GROUP BY 1").fetchall())
                if exists else "no outbox table"
            )
        return one(conn, sql)

    callbacks_bench._prepare = prepared
    callbacks_bench._one = counted


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--outbox", choices=["none", "account", "no-triggers"], default="none")
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("DIALER_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("DIALER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args(argv)
    counts: dict[str, Any] = {}
    _patch(args.outbox, counts)
    load_start = os.getloadavg()
    result = callbacks_bench.run(args.calls, args.concurrency, args.admin_url, args.redis_url, None)
    result["outbox"] = args.outbox
    result["outbox_rows"] = counts.get("outbox_rows")
    result["loadavg_start"] = tuple(round(x, 2) for x in load_start)
    result["loadavg_end"] = tuple(round(x, 2) for x in os.getloadavg())
    for key, value in result.items():
        print(f"{key:>20}: {value}")
    ok = result["lost"] == 0 and result["stored"] == args.calls
    print("OK: none lost" if ok else "FAIL: events lost")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
