"""Dial one chunk of claimed destinations: check, take budget, commit attempts, send, record.

For each provider request (one destination, or a bulk of several for Plivo/Vobiz/VoIPbin):
  concurrency slots -> attempt rows committed -> CPS reservation (sleep once until the booked send time,
  workers.dialing.send_booking) -> HTTP request -> ids recorded (workers.dialing.accepted_calls), or the
  error handled as docs/DESIGN.md's table says. Anything this task cannot dial now is handed back to Postgres
  with a `next_attempt_at`; no long waits here.

A chunk dials on the account the dispatcher named (the campaign's primary when none). Each request's answer
is told to that account's circuit breaker (workers.dialing.circuit_breaker); when the account opens, the
chunk hands the rest back due now, for the campaign's next account.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from campaigns.accounts import load_account
from campaigns.blackouts import country_of, next_open, open_for
from campaigns.call_options import dial_lease_s
from campaigns.destination_kinds import CANNOT_DIAL, destination_kind
from campaigns.retry_policy import TRANSIENT_BACKOFF_BASE_S, TRANSIENT_BACKOFF_CAP_S, after_transient_error
from campaigns.states import CampaignState, CircuitState, DestinationStatus
from campaigns.store import attempt_marks as marks
from campaigns.store import dial_store as store
from workers.dialing import chunk_rows as rows
from workers.dialing.circuit_breaker import AccountBreaker
from workers.dialing.context import GO_ON, ChunkDial, ChunkReport, DialContext, RequestResult
from workers.dialing.limit_checks import schedule_first_check
from workers.dialing.outbound_request import outbound_call
from workers.dialing.send_booking import (
    MAX_RESERVATION_WAIT_S,
    Booking,
    NotRebooked,
    SendBooking,
    place_calls,
)
from workers.dialing.spoken_text import store_spoken_text, varies_per_destination
from workers.dialing.timed_sender import leaves_on_time
from workers.metrics.counters import counted_request
from workers.providers.base import ProviderAdapter
from workers.providers.errors import (
    Ambiguous,
    AuthFailed,
    PaymentRequired,
    ProviderError,
    Refused,
    Rejected,
    Throttled,
    Transient,
)
from workers.providers.registry import adapter_for
from workers.ratelimit import Reservation, throttle
from workers.ratelimit.backoff import full_jitter_backoff
from workers.ratelimit.chunk_sizing import request_size, sends_in_bulk

log = logging.getLogger(__name__)

SLOT_RETRY_DELAY_S = 1.0  # no free line: try again after this


def _request_size(chunk: ChunkDial) -> int:
    """Destinations per request (workers.ratelimit.chunk_sizing), at the rate enforced now."""
    max_per_request = chunk.adapter.traits.limits.max_destinations
    campaign, limits = chunk.campaign, chunk.limits
    if not sends_in_bulk(max_per_request, campaign.provider_options):
        return 1  # no need to ask Redis for the rate
    text_at_creation = chunk.adapter.traits.answer.document_kind == "none"
    if text_at_creation and varies_per_destination(campaign.provider_options):
        return 1  # the text goes in the create request: one text, so one destination, per request
    rate = chunk.ctx.budgets.current_rate(campaign.account_id, limits.cps)
    max_concurrent = min(limits.max_concurrent, campaign.max_concurrent or limits.max_concurrent)
    return request_size(max_per_request, campaign.provider_options, rate, campaign.cps, max_concurrent)


def _screen(
    ctx: DialContext,
    campaign: store.CampaignForDial,
    queued: list[store.QueuedDestination],
    report: ChunkReport,
) -> list[store.QueuedDestination]:
    """Dial-time checks (invariant 5): DNC, and the destination's local calling window on a day that is not
    a blackout (its country's public holiday, or one of the campaign's own dates)."""
    now = ctx.now()
    on_dnc = store.dnc_numbers(ctx.conn, [d.number for d in queued], campaign.id)
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
        if open_for(campaign.blackouts, campaign.window, tz, dest.number, now):
            callable_now.append(dest)
        else:
            opening = next_open(campaign.blackouts, campaign.window, tz, country_of(dest.number), now)
            closed.setdefault(opening or now + timedelta(hours=1), []).append(dest.id)
    for opening, ids in closed.items():
        report.handed_back += store.hand_back(ctx.conn, ids, opening)
    return callable_now


def _end_undialable(
    ctx: DialContext, adapter: ProviderAdapter, queued: list[store.QueuedDestination], report: ChunkReport
) -> list[store.QueuedDestination]:
    """Destinations the provider cannot dial (a SIP URI for a provider of E.164 numbers only: rows loaded or
    moved to this account before the loader and `campaign set` refused them) end as invalid, with the
    loader's reason as their outcome, rather than in a certain 400 at send time. In memory; one UPDATE only
    when there are some."""
    kinds = adapter.traits.options.destination_kinds
    undialable = {d.id for d in queued if destination_kind(d.number) not in kinds}
    if not undialable:
        return queued
    ended = store.mark_queued_as(ctx.conn, sorted(undialable), DestinationStatus.INVALID, CANNOT_DIAL)
    report.undialable += ended
    log.warning("%d destinations ended as invalid, %s: %s dials only %s", ended, CANNOT_DIAL,
                adapter.traits.kind, ", ".join(sorted(kinds)))
    return [d for d in queued if d.id not in undialable]


def dial_chunk(
    ctx: DialContext, campaign_id: int, destination_ids: list[int], account_id: int | None = None
) -> ChunkReport:
    """Dial the still-queued destinations among `destination_ids` on `account_id` (the campaign's primary when
    None); never one already sent."""
    report = ChunkReport()
    conn = ctx.conn
    campaign = store.load_campaign(conn, campaign_id, account_id)
    if campaign is None or campaign.state != CampaignState.RUNNING:
        report.handed_back += store.hand_back(conn, destination_ids, None)
        return report
    if not campaign.in_campaign or campaign.circuit == CircuitState.OPEN:
        # The account opened (or left the campaign's list) while this chunk waited in the queue: its
        # destinations go back due now, for the account the dispatcher routes them to next.
        report.handed_back += store.hand_back(conn, destination_ids, None)
        return report
    queued = store.queued_destinations(conn, destination_ids)
    report.skipped = len(destination_ids) - len(queued)  # already dialed by an earlier delivery, or reclaimed
    queued = _screen(ctx, campaign, queued, report)
    if not queued:
        return report
    creds, limits = load_account(conn, campaign.account_id)
    adapter = adapter_for(creds.provider)
    queued = _end_undialable(ctx, adapter, queued, report)
    if not queued:
        return report
    breaker = AccountBreaker(conn, ctx.budgets.client, creds.account_id, creds.provider, campaign.circuit)
    chunk = ChunkDial(ctx, campaign, creds, limits, adapter, report, breaker)
    size = _request_size(chunk)
    groups = [queued[i : i + size] for i in range(0, len(queued), size)]
    if size == 1 and len(queued) > 1:
        rows.start_ahead(chunk, queued)
    try:
        for index, group in enumerate(groups):
            stop_until = _dial_group(chunk, group)
            if stop_until is not None:
                rest = [d for g in groups[index + 1 :] for d in g]
                rows.undo_ahead(chunk, rest, stop_until)
                chunk.hand_back([d.id for d in rest if d.id not in chunk.ahead], stop_until)
                break
    finally:
        rows.record_unrecorded(chunk)
    return report


def _dial_group(chunk: ChunkDial, group: list[store.QueuedDestination]) -> datetime | None:
    """Dial one request's destinations. Returns a time to hand the rest of the chunk back for, or None."""
    ctx = chunk.ctx
    for throttle_round in range(throttle.THROTTLE_RETRIES_IN_TASK + 1):
        result = _try_once(chunk, group)
        if result.throttled is None:
            return result.stop_until
        backoff = throttle.throttle_backoff(throttle_round, result.throttled, ctx.rng)
        if throttle_round == throttle.THROTTLE_RETRIES_IN_TASK or backoff > MAX_RESERVATION_WAIT_S:
            not_before = ctx.now() + timedelta(seconds=backoff)
            chunk.hand_back([d.id for d in group], not_before)
            return not_before
        ctx.sleep(backoff)
        group = store.queued_destinations(ctx.conn, [d.id for d in group])
        if not group:
            return None
    return None


def _try_once(chunk: ChunkDial, group: list[store.QueuedDestination]) -> RequestResult:
    """One provider request for `group`: slots, attempt rows, booking, the request, and its answer."""
    ctx, campaign, creds, limits, report = chunk.ctx, chunk.campaign, chunk.creds, chunk.limits, chunk.report
    conn, budgets = ctx.conn, ctx.budgets
    if len(group) == 1 and group[0].id in chunk.ahead:  # started with the rest of the chunk
        started = [chunk.ahead.pop(group[0].id)]
        batch_id = started[0].batch_id or uuid.uuid4()
    else:
        members = [d.slot_member for d in group]
        lease_s = dial_lease_s(campaign.provider_options)
        if not budgets.acquire(
            creds.account_id, campaign.id, members, limits.max_concurrent, campaign.max_concurrent, lease_s
        ):
            not_before = ctx.now() + timedelta(seconds=SLOT_RETRY_DELAY_S)
            chunk.hand_back([d.id for d in group], not_before)
            return RequestResult(stop_until=not_before)
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
            return GO_ON
        chunk.spoken.update(store_spoken_text(conn, campaign, started))  # what each call will say
    spoken = chunk.spoken
    # Built before booking: between the booked time and the send only the request itself remains.
    call = outbound_call(campaign, creds, batch_id, [a.destination.number for a in started], spoken)
    booked, sending = _book_and_mark(chunk, started)
    if not booked.grant.granted:
        return _hand_back_unbooked(chunk, sending or started, booked.grant)
    if len(sending) != len(started):
        started = sending
        call = outbound_call(campaign, creds, batch_id, [a.destination.number for a in started], spoken)
    try:
        accepted = counted_request(
            lambda: place_calls(booked, chunk.adapter, ctx.client, creds, call),
            creds,
            call,
            campaign.id,
        )
    except NotRebooked:
        return _hand_back_unbooked(chunk, started, booked.grant)
    except ProviderError as exc:
        return _carrier_error(chunk, started, booked.grant, exc, batch_id)
    rows.record_accepted(chunk, started, accepted, batch_id)
    _schedule_call_limits(chunk, batch_id)
    throttle.recover_rate(budgets, creds.account_id, limits.cps)
    report.sent += len(started)
    chunk.breaker.note(None, len(started))
    return GO_ON


def _carrier_error(
    chunk: ChunkDial, started: list[store.StartedAttempt], grant: Reservation, exc: ProviderError,
    batch_id: uuid.UUID,
) -> RequestResult:
    """The carrier's answer was an error (docs/DESIGN.md's table): act on it, and tell the account's breaker.
    When the account opens, the rest of the chunk goes back due now, for the campaign's next account."""
    result = _act_on_error(chunk, started, grant, exc, batch_id)
    if chunk.breaker.note(exc, len(started)):
        return result
    chunk.report.errors.append(f"account {chunk.creds.account_id}'s circuit is open: the rest handed back")
    return RequestResult(stop_until=chunk.ctx.now())


def _act_on_error(
    chunk: ChunkDial, started: list[store.StartedAttempt], grant: Reservation, exc: ProviderError,
    batch_id: uuid.UUID,
) -> RequestResult:
    ctx, campaign, creds, limits, report = chunk.ctx, chunk.campaign, chunk.creds, chunk.limits, chunk.report
    conn, budgets = ctx.conn, ctx.budgets
    if isinstance(exc, Throttled):
        _give_back(chunk, started, grant, back_to="queued")
        throttle.slow_account_down(budgets, creds.account_id, limits.cps, exc)
        store.count_throttle(conn, campaign.id)
        report.throttled += len(started)
        return RequestResult(throttled=exc)
    if isinstance(exc, Rejected):
        if len(started) > 1:  # one bad destination refuses a whole bulk: dial them one by one
            _dial_singly(chunk, started)
        else:
            _fail_rejected(chunk, started, exc)
        return GO_ON
    if isinstance(exc, AuthFailed | PaymentRequired):
        _give_back(chunk, started, grant, back_to="pending")
        what = "balance too low" if isinstance(exc, PaymentRequired) else "credentials or account rejected"
        # Campaigns with no other account stop until a person acts; the others fail over (the breaker opens).
        store.pause_account_campaigns(
            conn, creds.account_id, f"{creds.provider} {what} (HTTP {exc.status}): {exc.message}"
        )
        report.errors.append(exc.message)
        return RequestResult(stop_until=ctx.now() + timedelta(seconds=5))
    if isinstance(exc, Transient):
        if chunk.campaign.has_fallbacks or chunk.breaker.probing:
            # Nothing was placed, and the fault is the carrier's, not the destination's: with another account
            # to go to (or as a probe of a recovering one), the destination goes back undone, due now, and
            # spends none of its retries; the breaker decides where it is dialed next.
            _give_back(chunk, started, grant, back_to="pending")
            report.errors.append(f"transient: {exc.message}")
            return GO_ON  # the breaker stops the chunk once the account opens
        return RequestResult(stop_until=_retry_transient(chunk, started, grant, exc))
    if isinstance(exc, Ambiguous):
        # The call may exist: the attempt stays open with its slot and its tokens (never refunded: the carrier
        # may have counted it). Callbacks, a status lookup or the evidence window settle it
        # (workers.housekeeping.send_evidence); a callback that came first has already moved it on, and is
        # kept.
        marks.note_ambiguous(conn, started, f"ambiguous send: {exc.message}")
        report.ambiguous += len(started)
        _schedule_call_limits(chunk, batch_id)  # the calls may exist: their ids may still come
        return GO_ON
    raise exc  # an error the table does not name: the task's own handling


def _schedule_call_limits(chunk: ChunkDial, batch_id: uuid.UUID) -> None:
    """Where the account's carrier is not told a limit, the dialer ends the request's calls at it
    (workers.housekeeping.call_limits): one check per request, first at its ring timeout."""
    schedule_first_check(chunk.ctx.budgets.client, chunk.adapter, chunk.creds, batch_id,
                         chunk.campaign.provider_options, chunk.ctx.now().timestamp())


def _dial_singly(chunk: ChunkDial, started: list[store.StartedAttempt]) -> None:
    """A bulk refused as a whole (400): undo it and send each destination alone, so only the bad one fails."""
    store.undo_unsent_attempts(chunk.ctx.conn, started, None, back_to="queued")
    chunk.release(started)
    for attempt in started:
        single = store.queued_destinations(chunk.ctx.conn, [attempt.destination.id])
        if single:
            _try_once(chunk, single)


def _fail_rejected(chunk: ChunkDial, started: list[store.StartedAttempt], exc: Rejected) -> None:
    """400 for one destination (or the adapter's refusal before sending): it fails with the message, no
    retry."""
    store.fail_attempts(
        chunk.ctx.conn,
        started,
        message=f"{'not sent' if isinstance(exc, Refused) else 'rejected by carrier'}: {exc.message}",
        destination_status=DestinationStatus.FAILED,
        next_attempt_at=None,
    )
    chunk.release(started)
    chunk.report.failed += len(started)


def _retry_transient(
    chunk: ChunkDial, started: list[store.StartedAttempt], grant: Reservation, exc: Transient
) -> datetime:
    """The carrier said outright that nothing was placed (no connection, 503 with Retry-After): free the
    slots and tokens; each destination retries after its own jittered backoff, at least Retry-After."""
    ctx = chunk.ctx
    now = ctx.now()
    chunk.release(started)
    ctx.budgets.refund(chunk.creds.account_id, chunk.campaign.id, grant)
    for attempt in started:
        tries = attempt.destination.next_try_this_run  # the limit counts this run's tries only
        jitter = full_jitter_backoff(
            tries, base=TRANSIENT_BACKOFF_BASE_S, cap=TRANSIENT_BACKOFF_CAP_S, rng=ctx.rng
        )
        backoff = max(exc.retry_after or 0.0, jitter)
        step = after_transient_error(tries, now, backoff)
        store.fail_attempts(
            ctx.conn,
            [attempt],
            message=f"transient: {exc.message}",
            destination_status=step.status,
            next_attempt_at=step.next_attempt_at,
        )
    chunk.report.errors.append(exc.message)
    return now + timedelta(seconds=1)


def _hand_back_unbooked(
    chunk: ChunkDial, attempts: list[store.StartedAttempt], grant: Reservation
) -> RequestResult:
    """No send time could be booked (or kept): nothing left; the attempts go back to pending for later."""
    chunk.breaker.given_back(len(attempts))
    not_before = chunk.ctx.now() + timedelta(seconds=max(grant.retry_after_s, 0.05))
    chunk.report.handed_back += store.undo_unsent_attempts(
        chunk.ctx.conn, attempts, not_before, back_to="pending"
    )
    chunk.release(attempts)
    return RequestResult(stop_until=not_before)


def _book_and_mark(
    chunk: ChunkDial, started: list[store.StartedAttempt]
) -> tuple[SendBooking, list[store.StartedAttempt]]:
    """Book the send time and mark the attempts as sending: (the booking, the attempts to send)."""
    sending: list[store.StartedAttempt] = []

    def mark_sending() -> bool:
        check = rows.mark_and_record(chunk, started)
        sending.extend(check.sending)
        chunk.report.handed_back += check.handed_back
        chunk.release(check.not_sent)
        return bool(sending)

    campaign = chunk.campaign
    booking = Booking(chunk.creds.account_id, campaign.id, len(started), chunk.limits.cps, campaign.cps)
    booked = SendBooking(chunk.ctx.budgets, booking, mark_sending, timed=leaves_on_time(chunk.ctx.client),
                         sleep=chunk.ctx.sleep)
    booked.book()
    return booked, sending


def _give_back(
    chunk: ChunkDial, started: list[store.StartedAttempt], grant: Reservation, *, back_to: str
) -> None:
    """The carrier placed nothing: undo the attempts (back to `back_to`), free their slots and tokens."""
    store.undo_unsent_attempts(chunk.ctx.conn, started, None, back_to=back_to)
    chunk.release(started)
    chunk.ctx.budgets.refund(chunk.creds.account_id, chunk.campaign.id, grant)


