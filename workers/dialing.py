"""Dial one chunk of claimed destinations: check, take budget, commit attempts, send, record.

For each provider request (one destination, or a bulk of several for Plivo/Vobiz/VoIPbin):
  concurrency slots -> attempt rows committed -> CPS reservation (sleep once until the booked send time)
  -> HTTP request -> ids recorded, or the error handled as DESIGN.md's table says.
Anything this task cannot dial now is handed back to Postgres with a `next_attempt_at`; no long waits here.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from campaigns.call_options import dial_lease_s, machine_detection_mode, ring_timeout, time_limit
from campaigns.retry_policy import after_transient_error
from campaigns.states import DestinationStatus
from campaigns.windows import is_callable_now, next_opening
from workers import dial_store as store
from workers.accounts import AccountLimits, load_account
from workers.batch_lookup import record_batch
from workers.callback_urls import callback_urls_for
from workers.providers.base import AccountCredentials, CallsAccepted, OutboundCall, ProviderAdapter
from workers.providers.errors import Ambiguous, AuthFailed, PaymentRequired, Rejected, Throttled, Transient
from workers.providers.registry import adapter_for
from workers.ratelimit import Budgets, BulkTooLarge, Reservation
from workers.ratelimit.backoff import full_jitter_backoff

log = logging.getLogger(__name__)

# Requests leave a few ms off their booked time and the carrier counts arrivals, so budgets are kept in a
# window 40 ms longer than a second: a send that reaches the carrier up to 40 ms off its booked time still
# never puts more than the CPS into any 1-second window the carrier sees. The cost is 4% of the budget.
# (Measured: with 30 ms, 200 CPS on a loaded 2-core machine saw 202 in one second.)
BUDGET_WINDOW_S = 1.04
MAX_RESERVATION_WAIT_S = 2.0  # longer than this and the work goes back to Postgres
SLOT_RETRY_DELAY_S = 1.0  # no free line: try again after this
LATE_TOLERANCE_S = 0.005  # woke later than this after the booked send time: book again
MARK_ALLOWANCE_S = 0.015  # plus this for the pre-send mark; 20 of the 40 ms guard remain for the request
# The mark starts this long before the booked time: late enough that a worker killed while waiting has
# marked nothing (its attempts go back to be dialed), early enough that a thousand-row bulk is marked in time.
MARK_LEAD_S = 0.01
MARK_LEAD_PER_ROW_S = 0.0001
MAX_REBOOKINGS = 3
THROTTLE_RETRIES_IN_TASK = 3  # 429s absorbed inside the task before handing the work back
RECOVERY_CHECK_S = 1.0
BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 8.0


@dataclass
class ChunkReport:
    """What one chunk task did, for logs and tests."""

    sent: int = 0
    handed_back: int = 0
    throttled: int = 0
    failed: int = 0
    ambiguous: int = 0
    skipped: int = 0
    dnc: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class DialContext:
    conn: psycopg.Connection
    client: httpx.Client
    budgets: Budgets
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    rng: random.Random = field(default_factory=random.Random)


def _group_size(
    ctx: DialContext, adapter: ProviderAdapter, campaign: store.CampaignForDial, limits: AccountLimits
) -> int:
    """Destinations per request: bulk where the provider takes it, never more than one second of budget
    at the rate enforced now (the adaptive rate may be below the configured one)."""
    if adapter.max_destinations_per_request <= 1 or campaign.provider_options.get("bulk") is False:
        return 1
    rate = ctx.budgets.current_rate(campaign.account_id, limits.cps)
    per_second = rate if campaign.cps is None else min(rate, campaign.cps)
    budget = min(per_second, limits.max_concurrent, campaign.max_concurrent or limits.max_concurrent)
    return max(1, min(adapter.max_destinations_per_request, int(budget)))


def _outbound(
    campaign: store.CampaignForDial, creds: AccountCredentials, batch_id: uuid.UUID, numbers: list[str]
) -> OutboundCall:
    options = campaign.provider_options
    machine = machine_detection_mode(options)
    return OutboundCall(
        caller_id=campaign.caller_id,
        destinations=numbers,
        callbacks=callback_urls_for(
            creds.provider,
            creds.account_id,
            str(batch_id),
            track_ringing=bool(options.get("track_ringing", True)),
            machine_detection=bool(machine),
        ),
        ring_timeout=ring_timeout(options),
        time_limit=time_limit(options),
        machine_detection=machine,
        tag=str(batch_id),
        message=options.get("message"),
        script_url=campaign.answer_url,
        extra=options.get("extra", {}),
    )


def _screen(
    ctx: DialContext,
    campaign: store.CampaignForDial,
    queued: list[store.QueuedDestination],
    report: ChunkReport,
) -> list[store.QueuedDestination]:
    """Dial-time checks (invariant 5): DNC and the destination's local calling window."""
    now = ctx.now()
    on_dnc = store.dnc_numbers(ctx.conn, [d.number for d in queued])
    if on_dnc:
        report.dnc += store.mark_queued_as(
            ctx.conn, [d.id for d in queued if d.number in on_dnc], DestinationStatus.DNC, "dnc"
        )
    callable_now: list[store.QueuedDestination] = []
    closed: dict[datetime | None, list[int]] = {}
    for dest in queued:
        if dest.number in on_dnc:
            continue
        tz = campaign.timezone_override or dest.timezone
        if is_callable_now(campaign.window, tz, now):
            callable_now.append(dest)
        else:
            opening = next_opening(campaign.window, tz, now)
            closed.setdefault(opening or now + timedelta(hours=1), []).append(dest.id)
    for opening, ids in closed.items():
        report.handed_back += store.hand_back(ctx.conn, ids, opening)
    return callable_now


def dial_chunk(ctx: DialContext, campaign_id: int, destination_ids: list[int]) -> ChunkReport:
    """Dial the still-queued destinations among `destination_ids`; never one already sent."""
    report = ChunkReport()
    conn = ctx.conn
    campaign = store.load_campaign(conn, campaign_id)
    if campaign is None or campaign.state != "running":
        report.handed_back += store.hand_back(conn, destination_ids, None)
        return report
    queued = store.queued_destinations(conn, destination_ids)
    report.skipped = len(destination_ids) - len(queued)  # already dialed by an earlier delivery, or reclaimed
    queued = _screen(ctx, campaign, queued, report)
    if not queued:
        return report
    creds, limits = load_account(conn, campaign.account_id)
    adapter = adapter_for(creds.provider)
    size = _group_size(ctx, adapter, campaign, limits)
    groups = [queued[i : i + size] for i in range(0, len(queued), size)]
    for index, group in enumerate(groups):
        stop_reason = _dial_group(ctx, campaign, creds, limits, adapter, group, report)
        if stop_reason is not None:
            rest = [d.id for g in groups[index + 1 :] for d in g]
            report.handed_back += store.hand_back(conn, rest, stop_reason)
            break
    return report


def _dial_group(
    ctx: DialContext,
    campaign: store.CampaignForDial,
    creds: AccountCredentials,
    limits: AccountLimits,
    adapter: ProviderAdapter,
    group: list[store.QueuedDestination],
    report: ChunkReport,
) -> datetime | None:
    """Dial one request's destinations. Returns a time to hand the rest of the chunk back for, or None."""
    for throttle_round in range(THROTTLE_RETRIES_IN_TASK + 1):
        outcome = _try_once(ctx, campaign, creds, limits, adapter, group, report)
        if not isinstance(outcome, Throttled):
            return outcome
        backoff = full_jitter_backoff(
            throttle_round,
            base=BACKOFF_BASE_S,
            cap=BACKOFF_CAP_S,
            retry_after=outcome.retry_after,
            rng=ctx.rng,
        )
        if throttle_round == THROTTLE_RETRIES_IN_TASK or backoff > MAX_RESERVATION_WAIT_S:
            not_before = ctx.now() + timedelta(seconds=backoff)
            report.handed_back += store.hand_back(ctx.conn, [d.id for d in group], not_before)
            return not_before
        ctx.sleep(backoff)
        group = store.queued_destinations(ctx.conn, [d.id for d in group])
        if not group:
            return None
    return None


def _try_once(
    ctx: DialContext,
    campaign: store.CampaignForDial,
    creds: AccountCredentials,
    limits: AccountLimits,
    adapter: ProviderAdapter,
    group: list[store.QueuedDestination],
    report: ChunkReport,
) -> datetime | None | Throttled:
    conn, budgets = ctx.conn, ctx.budgets
    members = [d.slot_member for d in group]
    lease_s = dial_lease_s(campaign.provider_options)
    if not budgets.acquire(
        creds.account_id, campaign.id, members, limits.max_concurrent, campaign.max_concurrent, lease_s
    ):
        not_before = ctx.now() + timedelta(seconds=SLOT_RETRY_DELAY_S)
        report.handed_back += store.hand_back(conn, [d.id for d in group], not_before)
        return not_before
    batch_id = uuid.uuid4()
    # Attempt rows first (invariant 1), so the only work between the booked send time and the request
    # is the request itself: a send that leaves late compresses the gap to the next one.
    started = store.start_attempts(
        conn, campaign=campaign, destinations=group, batch_id=batch_id, lease_s=lease_s
    )
    won = {a.destination.slot_member for a in started}
    lost = [m for m in members if m not in won]
    if lost:  # someone else dialed or reclaimed these meanwhile: give their slots back
        budgets.release(creds.account_id, campaign.id, lost)
    if not started:
        return None
    account_rate = limits.cps
    campaign_rate = campaign.cps
    # Built before booking: between the booked time and the send only the request itself remains.
    call = _outbound(campaign, creds, batch_id, [a.destination.number for a in started])
    grant, sending = _book_and_mark(ctx, campaign, creds, started, account_rate, campaign_rate)
    if not grant.granted:
        not_before = ctx.now() + timedelta(seconds=max(grant.retry_after_s, 0.05))
        store.undo_unsent_attempts(conn, sending or started, not_before, back_to="pending")
        budgets.release(creds.account_id, campaign.id, _members(sending or started))
        report.handed_back += len(sending or started)
        return not_before
    if len(sending) != len(started):
        started = sending
        call = _outbound(campaign, creds, batch_id, [a.destination.number for a in started])
    try:
        accepted = adapter.create_calls(ctx.client, creds, call)
    except Throttled as exc:
        _give_back(ctx, campaign, creds, started, grant, back_to="queued")
        budgets.decrease(creds.account_id, limits.cps)
        if exc.retry_after:
            budgets.pause_account(creds.account_id, exc.retry_after)
        store.count_throttle(conn, campaign.id)
        report.throttled += len(started)
        return exc
    except Rejected as exc:
        if len(started) > 1:  # one bad destination refuses a whole bulk: dial them one by one
            _dial_singly(ctx, campaign, creds, limits, adapter, started, report)
        else:
            _fail_rejected(ctx, campaign, creds, started, exc, report)
        return None
    except (AuthFailed, PaymentRequired) as exc:
        _give_back(ctx, campaign, creds, started, grant, back_to="pending")
        what = "balance too low" if isinstance(exc, PaymentRequired) else "credentials or account rejected"
        store.pause_account_campaigns(
            conn, creds.account_id, f"{creds.provider} {what} (HTTP {exc.status}): {exc.message}"
        )
        report.errors.append(exc.message)
        return ctx.now() + timedelta(seconds=5)
    except Transient as exc:
        return _retry_transient(ctx, campaign, creds, started, grant, exc, report)
    except Ambiguous as exc:
        store.note_ambiguous(conn, started, f"no answer from carrier: {exc.message}")
        report.ambiguous += len(started)
        return None
    _record_accepted(ctx, campaign, creds, started, accepted, batch_id)
    _recover_rate(budgets, creds.account_id, limits.cps)
    report.sent += len(started)
    return None


def _members(started: list[store.StartedAttempt]) -> list[str]:
    return [a.destination.slot_member for a in started]


def _dial_singly(
    ctx: DialContext,
    campaign: store.CampaignForDial,
    creds: AccountCredentials,
    limits: AccountLimits,
    adapter: ProviderAdapter,
    started: list[store.StartedAttempt],
    report: ChunkReport,
) -> None:
    """A bulk refused as a whole (400): undo it and send each destination alone, so only the bad one fails."""
    store.requeue_for_single_dial(ctx.conn, started)
    ctx.budgets.release(creds.account_id, campaign.id, _members(started))
    for attempt in started:
        single = store.queued_destinations(ctx.conn, [attempt.destination.id])
        if single:
            _try_once(ctx, campaign, creds, limits, adapter, single, report)


def _fail_rejected(
    ctx: DialContext,
    campaign: store.CampaignForDial,
    creds: AccountCredentials,
    started: list[store.StartedAttempt],
    exc: Rejected,
    report: ChunkReport,
) -> None:
    """400 for one destination: it fails with the carrier's message, no retry."""
    store.fail_attempts(
        ctx.conn,
        started,
        message=f"rejected by carrier: {exc.message}",
        destination_status=DestinationStatus.FAILED,
        next_attempt_at=None,
    )
    ctx.budgets.release(creds.account_id, campaign.id, _members(started))
    report.failed += len(started)


def _retry_transient(
    ctx: DialContext,
    campaign: store.CampaignForDial,
    creds: AccountCredentials,
    started: list[store.StartedAttempt],
    grant: Reservation,
    exc: Transient,
    report: ChunkReport,
) -> datetime:
    """5xx or no connection: nothing was placed. Each destination retries after its own jittered backoff."""
    now = ctx.now()
    ctx.budgets.release(creds.account_id, campaign.id, _members(started))
    ctx.budgets.refund(creds.account_id, campaign.id, grant)
    for attempt in started:
        attempt_no = attempt.destination.next_attempt_no
        backoff = full_jitter_backoff(attempt_no, base=5.0, cap=300.0, rng=ctx.rng)
        step = after_transient_error(attempt_no, now, backoff)
        store.fail_attempts(
            ctx.conn,
            [attempt],
            message=f"transient: {exc.message}",
            destination_status=step.status,
            next_attempt_at=step.next_attempt_at,
        )
    report.errors.append(exc.message)
    return now + timedelta(seconds=1)


_last_recovery: dict[int, float] = {}


def _recover_rate(budgets: Budgets, account_id: int, configured: float) -> None:
    """A clean send: let the adaptive rate climb back. Redis allows one step a second anyway, so this
    process asks at most that often rather than once per call."""
    now = time.monotonic()
    if now - _last_recovery.get(account_id, 0.0) >= RECOVERY_CHECK_S:
        _last_recovery[account_id] = now
        budgets.recover(account_id, configured)


def _book_and_mark(
    ctx: DialContext,
    campaign: store.CampaignForDial,
    creds: AccountCredentials,
    started: list[store.StartedAttempt],
    account_rate: float,
    campaign_rate: float | None,
) -> tuple[Reservation, list[store.StartedAttempt]]:
    """Book the send time and mark the attempts as sending: (the booking, the attempts to send)."""
    sending: list[store.StartedAttempt] = []

    def mark_sending() -> bool:
        marked = store.mark_sending(ctx.conn, started)
        sending.extend(a for a in started if a.attempt_id in marked)
        handed_back = [a for a in started if a.attempt_id not in marked]
        if handed_back:  # the reaper took them back (this thread woke very late): not ours to send
            ctx.budgets.release(creds.account_id, campaign.id, _members(handed_back))
        return bool(sending)

    grant = _book_send_time(
        ctx, creds.account_id, campaign.id, len(started), account_rate, campaign_rate, mark_sending
    )
    return grant, sending


def _book_send_time(
    ctx: DialContext,
    account_id: int,
    campaign_id: int,
    n: int,
    account_rate: float,
    campaign_rate: float | None,
    mark_sending: Callable[[], bool],
) -> Reservation:
    """Reserve n tokens and sleep until the booked send time; re-book if this thread woke too late
    (a late send would put two bookings closer than the budget allows at the carrier). The attempts are
    marked as sending (`mark_sending`) just before the booked time, not after it: a bulk of a thousand
    rows takes longer to mark than the guard allows after the booked time. False from `mark_sending`
    means none is left to send."""
    marked = False
    for _ in range(MAX_REBOOKINGS):
        try:
            grant = ctx.budgets.reserve(
                account_id,
                campaign_id,
                n,
                account_rate,
                campaign_rate,
                MAX_RESERVATION_WAIT_S,
                BUDGET_WINDOW_S,
            )
        except BulkTooLarge:  # the adaptive rate fell since the chunk was sized: hand back, re-chunk
            return Reservation(False, 0.0, 0.1)
        if not grant.granted:
            return grant
        due = time.monotonic() + grant.send_at_delay_s
        allowed_lateness = LATE_TOLERANCE_S
        if not marked:
            lead = due - (MARK_LEAD_S + MARK_LEAD_PER_ROW_S * n) - time.monotonic()
            if lead > 0:
                ctx.sleep(lead)
            if not mark_sending():
                ctx.budgets.refund(account_id, campaign_id, grant)
                return Reservation(False, 0.0, 0.0)
            marked = True
            if time.monotonic() > due:
                # A send booked for now waited for the mark's round trip: allow it its usual time, but a
                # stall (a loaded machine, a big bulk) re-books, and the next booking needs no mark.
                allowed_lateness += MARK_ALLOWANCE_S
        remaining = due - time.monotonic()
        if remaining > 0:
            ctx.sleep(remaining)
        if time.monotonic() - due > allowed_lateness:
            ctx.budgets.refund(account_id, campaign_id, grant)
            continue
        return grant
    # Marked but never sent (this thread kept waking late): the caller undoes them, which is safe.
    return Reservation(False, 0.0, 0.05)


def _give_back(
    ctx: DialContext,
    campaign: store.CampaignForDial,
    creds: AccountCredentials,
    started: list[store.StartedAttempt],
    grant: Reservation,
    *,
    back_to: str,
) -> None:
    """The carrier placed nothing: undo the attempts (back to `back_to`), free their slots and tokens."""
    store.undo_unsent_attempts(ctx.conn, started, None, back_to=back_to)
    ctx.budgets.release(creds.account_id, campaign.id, _members(started))
    ctx.budgets.refund(creds.account_id, campaign.id, grant)


def _record_accepted(
    ctx: DialContext,
    campaign: store.CampaignForDial,
    creds: AccountCredentials,
    started: list[store.StartedAttempt],
    accepted: CallsAccepted,
    batch_id: uuid.UUID,
) -> None:
    """Store the ids the carrier gave; then apply any callback that arrived before them."""
    from workers.results import apply_events_for_ids

    by_number = {a.destination.number.lstrip("+"): a for a in started}
    refused = [by_number[n.lstrip("+")] for n in accepted.refused if n.lstrip("+") in by_number]
    if refused:  # no call will come of these: fail them now rather than leave them to the reaper
        store.fail_attempts(
            ctx.conn,
            refused,
            message="rejected by carrier: invalid destination in bulk",
            destination_status=DestinationStatus.FAILED,
            next_attempt_at=None,
        )
        ctx.budgets.release(creds.account_id, campaign.id, _members(refused))
        started = [a for a in started if a not in refused]
    rows: list[tuple[int, str | None, str | None]] = []
    matched: set[int] = set()
    for placed in accepted.calls:
        attempt = by_number.get((placed.to or "").lstrip("+")) if placed.to else None
        if attempt is None and len(started) == 1:
            attempt = started[0]
        if attempt is not None and attempt.attempt_id not in matched:
            matched.add(attempt.attempt_id)
            rows.append((attempt.attempt_id, placed.request_uuid, placed.call_uuid))
    for attempt in started:  # bulk: ids only in callbacks; mark sent
        if attempt.attempt_id not in matched:
            only = accepted.request_uuids[0] if len(started) == 1 and accepted.request_uuids else None
            rows.append((attempt.attempt_id, only, None))
    store.record_sent(ctx.conn, rows)
    if len(started) > 1 and len(matched) < len(started):  # a bulk answer's ids, in no order: keep them
        record_batch(ctx.conn, batch_id, creds.account_id, list(accepted.request_uuids))
    ids = [i for r in rows for i in r[1:] if i] + list(accepted.request_uuids)
    if ids and store.has_unapplied_events(ctx.conn, ids):
        apply_events_for_ids(ctx.conn, ids)
