"""Every Redis key the dialer writes is named here and nowhere else, under DIALER_REDIS_PREFIX."""

from __future__ import annotations

from campaigns.config import get_settings


def _prefix() -> str:
    return get_settings().redis_prefix


def account_cps(account_id: int) -> str:
    """GCRA theoretical-arrival-time of an account's CPS budget."""
    return f"{_prefix()}:cps:account:{account_id}"


def campaign_cps(campaign_id: int) -> str:
    return f"{_prefix()}:cps:campaign:{campaign_id}"


def account_rate(account_id: int) -> str:
    """Hash of the account's adaptive (AIMD) rate: configured, current, last decrease."""
    return f"{_prefix()}:rate:account:{account_id}"


def account_last_throttle(account_id: int) -> str:
    """Set for AIMD's confirm window after a 429, so a second 429 within it is told from an isolated one."""
    return f"{_prefix()}:rate:last429:account:{account_id}"


def account_pause(account_id: int) -> str:
    """Epoch-seconds until which every worker holds off this account (set from Retry-After)."""
    return f"{_prefix()}:pause:account:{account_id}"


def account_health(account_id: int) -> str:
    """Hash of the account's request results by second: the circuit breaker's window
    (workers.ratelimit.health)."""
    return f"{_prefix()}:health:account:{account_id}"


def account_slots(account_id: int) -> str:
    """Sorted set of live calls: member attempt id, score lease expiry (Redis TIME seconds)."""
    return f"{_prefix()}:slots:account:{account_id}"


def campaign_slots(campaign_id: int) -> str:
    return f"{_prefix()}:slots:campaign:{campaign_id}"


def account_stats(account_id: int) -> str:
    """Hash of counters for operators (throttled, backoffs)."""
    return f"{_prefix()}:stats:account:{account_id}"


def dispatch_lock() -> str:
    """Held by the one dispatcher tick running at a time."""
    return f"{_prefix()}:lock:dispatch"


def dispatch_account_lock(account_id: int) -> str:
    """Held while one pass (a dispatcher tick's or a line refill's) claims for this account, so two passes
    never count the same free line and over-queue it."""
    return f"{_prefix()}:lock:dispatch:account:{account_id}"


def lines_bound(account_id: int) -> str:
    """Set (with a short lease) while the account's free lines, not its CPS, limit what the dispatcher may
    claim and destinations are waiting: only then does a call's end announce its freed line."""
    return f"{_prefix()}:refill:lines-bound:account:{account_id}"


def lines_freed() -> str:
    """List of account ids, one pushed by each release of a call's slot that freed a line (slots_release.lua);
    the refill listeners (workers.dispatch.refill) pop it to dial a waiting destination at once."""
    return f"{_prefix()}:refill:lines-freed"


def reaper_lock() -> str:
    return f"{_prefix()}:lock:reaper"


def run_scheduler_lock() -> str:
    """Held by the one run-scheduler tick (scheduled runs) running at a time."""
    return f"{_prefix()}:lock:run-scheduler"


def broker_prefix() -> str:
    """kombu's global_keyprefix, so Celery's queues live under the same prefix."""
    return f"{_prefix()}:celery:"


def beat_prefix() -> str:
    """celery-redbeat's key prefix: beat's schedule entries and its lock, one set per deployment."""
    return f"{_prefix()}:beat:"


def beat_lock() -> str:
    """Held by the one beat of this deployment, renewed on every tick (workers.runtime.beat_schedule)."""
    return f"{beat_prefix()}lock"


def callback_nonce(provider: str, account_id: int, scheme: str, nonce: str) -> str:
    """A signed callback's nonce, remembered so a replay is refused; one account's nonces are its own, and
    each signature version's (`scheme`: "v3", "v2") are apart from the other's."""
    return f"{_prefix()}:nonce:{provider}:{account_id}:{scheme or '-'}:{nonce}"


def callback_stats() -> str:
    """Hash of counters of callbacks refused before any account was known (unknown account ids): one key,
    whatever the number of ids an attacker tries."""
    return f"{_prefix()}:stats:callbacks"


def account_cps_sends(account_id: int) -> str:
    """Sorted set of the sends booked on an account's CPS budget: member "send_us:n:seq", score send_us."""
    return f"{_prefix()}:cps:account:{account_id}:sends"


def campaign_cps_sends(campaign_id: int) -> str:
    """Sorted set of the sends booked on a campaign's own CPS budget, as account_cps_sends."""
    return f"{_prefix()}:cps:campaign:{campaign_id}:sends"


def account_cps_reach(account_id: int) -> str:
    """Sorted set of the same sends scored by their reach: the latest they may reach the carrier (booked
    time plus the allowed lateness and the network's spread, lowered to the real leave time once sent)."""
    return f"{_prefix()}:cps:account:{account_id}:reach"


def campaign_cps_reach(campaign_id: int) -> str:
    """The reach of the sends booked on a campaign's own CPS budget, as account_cps_reach."""
    return f"{_prefix()}:cps:campaign:{campaign_id}:reach"


def budgets_epoch() -> str:
    """Set once the budgets were built in this Redis; missing means Redis lost its state (restart without
    persistence, FLUSHALL, failover to an empty replica) and the budgets must be rebuilt before any send."""
    return f"{_prefix()}:budgets:epoch"


def budgets_rebuild_lock() -> str:
    """Held by the one process rebuilding the budgets after Redis lost its state."""
    return f"{_prefix()}:lock:budgets-rebuild"


def call_limit_checks() -> str:
    """Sorted set of provider requests (batch ids) whose calls the dialer ends at a limit their carrier was
    not told, scored by the next deadline (epoch seconds) of one of their calls
    (workers.housekeeping.call_limits; restored from Postgres by the reaper if lost)."""
    return f"{_prefix()}:call-limits:batches"


def webhook_pass() -> str:
    """Set (with a TTL) while a webhook delivery pass is queued or running (workers.runtime.tasks)."""
    return f"{_prefix()}:webhooks:pass"
