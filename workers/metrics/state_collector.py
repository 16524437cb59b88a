"""State metrics read from Postgres and Redis (registered by the API process only, and read through
workers.metrics.state_snapshot: at most once per DIALER_METRICS_REFRESH_S, whatever the number of scrapes).

Calls per campaign and account come from the attempt rows themselves, so they are right whichever process
placed or settled the call, and survive restarts. Only campaigns running, paused, or changed in the last
hour are exported (bounded labels). Postgres is read on one connection the collector holds for the life of
the process (application_name `dialer-api-metrics`): a scrape never opens a session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import psycopg
import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from campaigns.db import SESSION_OPTIONS
from campaigns.load_tally import loads_so_far
from campaigns.states import OPEN_ATTEMPT, AttemptStatus, CampaignState, CircuitState, Outcome, sql_in
from workers import redis_keys
from workers.queues import DIAL_QUEUE, HOUSEKEEPING_QUEUE, RESULTS_QUEUE
from workers.ratelimit import Budgets

log = logging.getLogger(__name__)

ACTIVE_CAMPAIGNS = f"""
SELECT c.id, c.account_id, c.throttled_count FROM campaign c
WHERE c.account_id IS NOT NULL
  AND ({sql_in("c.state", {CampaignState.RUNNING, CampaignState.PAUSED})}
       OR c.updated_at > now() - interval '1 hour')
"""
# An attempt ended unanswered or failed: every outcome but answered and unknown, or refused outright.
UNANSWERED_OUTCOMES = frozenset(Outcome) - {Outcome.ANSWERED, Outcome.UNKNOWN}
CALLS_BY_OUTCOME = f"""
SELECT campaign_id, account_id, count(*) FILTER (WHERE sent_at IS NOT NULL),
       count(*) FILTER (WHERE outcome = '{Outcome.ANSWERED.value}'),
       count(*) FILTER (WHERE status = '{AttemptStatus.FAILED.value}'
                              OR {sql_in("outcome", UNANSWERED_OUTCOMES)}),
       count(*) FILTER (WHERE outcome = '{Outcome.UNKNOWN.value}' OR status = '{AttemptStatus.UNKNOWN.value}')
FROM call_attempt WHERE campaign_id = ANY(%s) GROUP BY 1, 2
"""
ACCOUNTS = "SELECT id, cps, max_concurrent FROM provider_account"
# Every account's circuit breaker (campaigns.circuits; no row is closed).
CIRCUITS = """
SELECT a.id, coalesce(c.state, 'closed') FROM provider_account a
LEFT JOIN account_circuit c ON c.account_id = a.id ORDER BY a.id
"""
CALLBACK_BACKLOG = """
SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(received_at)), 0) FROM call_event
WHERE applied_at IS NULL AND received_at > now() - interval '1 hour'
"""
PAST_LEASE = f"""
SELECT count(*) FROM call_attempt
WHERE {sql_in("status", OPEN_ATTEMPT)} AND lease_expires_at < now()
"""
QUEUES = (DIAL_QUEUE, RESULTS_QUEUE, HOUSEKEEPING_QUEUE)
APPLICATION_NAME = "dialer-api-metrics"  # how the collector's one session shows in pg_stat_activity
# The aggregates over call_attempt must not hold the connection (or a scraper) for ever.
STATEMENT_TIMEOUT_MS = 5000


class DialerStateCollector(Collector):
    """Reads the dialer's state when collected, on the one Postgres connection it holds (opened on first
    use, opened again only after it broke); a store that cannot be read yields `dialer_state_up 0`.
    Collect from one thread at a time (workers.metrics.state_snapshot serialises it)."""

    def __init__(self, psycopg_url: str, redis_client: redis.Redis) -> None:
        self.psycopg_url = psycopg_url
        self.redis = redis_client
        self.budgets = Budgets(redis_client)
        self.conn: psycopg.Connection | None = None

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "dialer_state_up", "1 if the last scrape read Postgres and Redis", labels=["store"]
        )
        try:
            yield from self._postgres(self._connection())
            up.add_metric(["postgres"], 1)
        except psycopg.Error as exc:
            log.warning("metrics: Postgres unreadable: %s", exc)
            self.close()  # the next read opens a fresh one
            up.add_metric(["postgres"], 0)
        try:
            yield from self._queues()
            up.add_metric(["redis"], 1)
        except redis.RedisError as exc:
            log.warning("metrics: Redis unreadable: %s", exc)
            up.add_metric(["redis"], 0)
        yield up
        yield GaugeMetricFamily(
            "dialer_state_read_timestamp_seconds", "When this state was read (Unix time)", value=time.time()
        )

    def _connection(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = psycopg.connect(
                self.psycopg_url, autocommit=True, connect_timeout=3, application_name=APPLICATION_NAME,
                options=f"{SESSION_OPTIONS} -c statement_timeout={STATEMENT_TIMEOUT_MS}")
        return self.conn

    def close(self) -> None:
        """Close the held connection (at shutdown, or after an error)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                log.debug("closing the metrics connection failed", exc_info=True)

    def _postgres(self, conn: psycopg.Connection) -> Iterator[Metric]:
        campaigns = conn.execute(ACTIVE_CAMPAIGNS).fetchall()
        labels = ["account", "campaign"]
        placed = CounterMetricFamily("dialer_calls_placed", "Calls sent to the carrier", labels=labels)
        answered = CounterMetricFamily("dialer_calls_answered", "Calls answered by a person", labels=labels)
        failed = CounterMetricFamily(
            "dialer_calls_failed", "Calls that ended unanswered or failed (busy, no answer, …)", labels=labels
        )
        unknown = CounterMetricFamily(
            "dialer_calls_unknown", "Calls whose outcome never became known", labels=labels
        )
        throttled = CounterMetricFamily("dialer_campaign_throttled", "429s met while dialing", labels=labels)
        for campaign_id, account_id, throttled_count in campaigns:
            throttled.add_metric([str(account_id), str(campaign_id)], throttled_count)
        rows = conn.execute(CALLS_BY_OUTCOME, ([c[0] for c in campaigns],)).fetchall() if campaigns else []
        for campaign_id, account_id, n_placed, n_answered, n_failed, n_unknown in rows:
            key = [str(account_id), str(campaign_id)]
            placed.add_metric(key, n_placed)
            answered.add_metric(key, n_answered)
            failed.add_metric(key, n_failed)
            unknown.add_metric(key, n_unknown)
        yield from (placed, answered, failed, unknown, throttled)
        yield from self._accounts(conn)
        yield self._circuits(conn)
        count, oldest = conn.execute(CALLBACK_BACKLOG).fetchone() or (0, 0)
        yield GaugeMetricFamily("dialer_callbacks_unapplied", "Stored callbacks not yet applied", value=count)
        yield GaugeMetricFamily(
            "dialer_callback_lag_seconds",
            "Age of the oldest stored callback not yet applied",
            value=float(oldest),
        )
        row = conn.execute(PAST_LEASE).fetchone()
        yield GaugeMetricFamily(
            "dialer_attempts_past_lease",
            "Open attempts past their lease (the reaper's backlog)",
            value=row[0] if row else 0,
        )
        rows_read, seconds = loads_so_far(conn)
        yield CounterMetricFamily("dialer_loader_rows", "CSV rows read by campaign loads (CLI, API, console)",
                                  value=rows_read)
        yield CounterMetricFamily("dialer_loader_seconds", "Time spent loading campaigns", value=seconds)

    def _accounts(self, conn: psycopg.Connection) -> Iterator[Metric]:
        budget = GaugeMetricFamily(
            "dialer_cps_budget", "The account's configured calls per second", labels=["account"]
        )
        effective = GaugeMetricFamily(
            "dialer_cps_effective", "The account's CPS after 429 backoff (adaptive rate)", labels=["account"]
        )
        used = GaugeMetricFamily(
            "dialer_cps_used", "Calls booked on the account in the last second", labels=["account"]
        )
        live = GaugeMetricFamily("dialer_live_calls", "Calls holding a concurrency slot", labels=["account"])
        limit = GaugeMetricFamily(
            "dialer_max_concurrent", "The account's concurrent-call limit", labels=["account"]
        )
        try:
            now_s, now_us = self.redis.time()
            now = now_s * 1_000_000 + now_us
            for account_id, cps, max_concurrent in conn.execute(ACCOUNTS).fetchall():
                key = [str(account_id)]
                budget.add_metric(key, cps)
                limit.add_metric(key, max_concurrent)
                effective.add_metric(key, self.budgets.current_rate(account_id, cps))
                live.add_metric(key, self.budgets.live_count(account_id))
                used.add_metric(key, self._booked_last_second(account_id, now))
        except redis.RedisError as exc:
            log.warning("metrics: Redis unreadable for the budgets: %s", exc)
        yield from (budget, effective, used, live, limit)

    def _circuits(self, conn: psycopg.Connection) -> Metric:
        """One series per account and state, 1 for its state now: Postgres alone, so Redis being down
        leaves it right (the breaker lives in Postgres)."""
        gauge = GaugeMetricFamily(
            "dialer_account_circuit_state",
            "1 for the account's circuit breaker state now (closed takes attempts, open takes none, "
            "half_open is being probed), 0 for the others", labels=["account", "state"])
        for account_id, state in conn.execute(CIRCUITS).fetchall():
            for candidate in CircuitState:
                gauge.add_metric([str(account_id), candidate.value], 1 if candidate.value == state else 0)
        return gauge

    def _booked_last_second(self, account_id: int, now_us: int) -> int:
        """Tokens of the sends booked in the last second (members "send_us:n:seq")."""
        members = self.redis.zrangebyscore(
            redis_keys.account_cps_sends(account_id), now_us - 1_000_000, now_us
        )
        total = 0
        for member in members:
            parts = (member.decode() if isinstance(member, bytes) else str(member)).split(":")
            total += int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 1
        return total

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "dialer_queue_depth", "Tasks waiting in each Celery queue", labels=["queue"]
        )
        prefix = redis_keys.broker_prefix()
        for queue in QUEUES:
            depth.add_metric([queue], self.redis.llen(f"{prefix}{queue}"))
        yield depth


def state_collector(psycopg_url: str, redis_url: str) -> DialerStateCollector:
    """The state collector of the API's /metrics, with its own Redis client."""
    return DialerStateCollector(psycopg_url, redis.Redis.from_url(redis_url, socket_timeout=3))
