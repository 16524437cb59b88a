"""The carrier: admits call creations under each account's CPS (a strict sliding 1-second window of
arrivals by default), concurrency and credit, places them
paced at the CPS, and runs each call on a clock (ringing, a seeded outcome, hangup) emitting the
provider's callbacks. Call durations and callback backoff are divided by `speed`; limits are real time."""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from simulator.callbacks import Callback, CallbackSender
from simulator.config import OUTCOMES, Account, SimConfig
from simulator.ledger import CallRecord, Ledger
from simulator.limits import CpsLimit, Pacer, arrival_delay, make_cps_limit
from simulator.schedule import FaultSchedule

# How long a call asked for with no ring limit rings unanswered before the network gives up (carrier s).
NETWORK_RING_LIMIT_S = 3600.0


class CallbackBuilder(Protocol):
    """What a provider module gives the carrier: its callbacks for each phase of a call."""

    def ring_callbacks(self, call: CallRecord, account: Account) -> list[Callback]: ...
    def answer_callbacks(self, call: CallRecord, account: Account) -> list[Callback]: ...
    def hangup_callbacks(self, call: CallRecord, account: Account) -> list[Callback]: ...


@dataclass(slots=True)
class Rejection:
    """Why a creation was refused with 429, and when a retry could pass (seconds)."""

    reason: str          # "cps" or "concurrency"
    message: str
    retry_after: float


@dataclass(slots=True)
class AccountState:
    bucket: CpsLimit
    pacer: Pacer
    kind: str
    live: int = 0
    credit_used: int = 0
    admitted_at: float | None = None  # monotonic time the limiter counted the request being accepted at
    admitted_source: str = "handler"  # where that time came from: "kernel" or "handler"


class Carrier:
    def __init__(self, config: SimConfig, *, speed: float, seed: int) -> None:
        self.config = config
        self.speed = speed
        self.ledger = Ledger()
        self.sender = CallbackSender(config, self.ledger, speed=speed, seed=seed)
        self.rng = random.Random(seed)
        self.fault_rng = random.Random(seed * 31 + 7)
        self.jitter_rng = random.Random(f"{seed}:arrival-jitter")
        self.states: dict[str, AccountState] = {}
        self.calls: dict[str, CallRecord] = {}  # by call_uuid and by request_uuid
        self.providers: dict[str, CallbackBuilder] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.hangups: dict[str, asyncio.Event] = {}  # call_uuid -> set when the API asks to hang it up
        self.public_url = ""  # http://host:port, for URLs the API hands out (Bandwidth callUrl)
        self.arrival_stamp = "handler"  # "kernel": create requests counted at their bytes' receive time
        self.schedule = FaultSchedule()  # timed per-account faults of the create requests

    async def start(self) -> None:
        await self.sender.start()

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.sender.close()

    def _state(self, account: Account, now: float) -> AccountState:
        state = self.states.get(account.auth_id)
        kind = self.config.limiter.kind
        if state is None:
            state = AccountState(make_cps_limit(kind, account.cps, now), Pacer(account.cps), kind)
            self.states[account.auth_id] = state
        elif state.kind != kind:
            state.bucket, state.kind = make_cps_limit(kind, account.cps, now), kind
        elif state.bucket.rate != account.cps:
            state.bucket.set_rate(account.cps, now)
            state.pacer.rate = float(account.cps)
        return state

    def arrival_delay(self) -> float:
        """Seconds of network delay before the limiter sees the next create request (the jitter knob)."""
        limiter = self.config.limiter
        return arrival_delay(self.jitter_rng, limiter.jitter_mean_ms, limiter.jitter_spread_ms)

    def has_credit(self, account: Account, n: int) -> bool:
        if account.credit is None:
            return True
        return self._state(account, time.monotonic()).credit_used + n <= account.credit

    def admit(self, account: Account, n: int, arrival: float, source: str = "handler") -> Rejection | None:
        """Check concurrency then CPS for n destinations that arrived at `arrival` (monotonic; from the
        kernel's receive stamp or, as `source` says, the handler's clock); take the tokens when admitted."""
        self.ledger.arrival_counted(source)
        state = self._state(account, arrival)
        rejection: Rejection | None = None
        if state.live + n > account.max_concurrent:
            rejection = Rejection("concurrency", "concurrent call limit exceeded", 1.0)
        else:
            wait = state.bucket.try_take(n, arrival)
            if wait > 0:
                rejection = Rejection("cps", "call creation rate limit exceeded", wait)
            else:
                state.admitted_at = state.bucket.counted_at
                state.admitted_source = source
        if rejection is not None:
            self.ledger.rejected(account.auth_id, account.provider, rejection.reason, n,
                                 round(rejection.retry_after, 3))
        return rejection

    def accept(self, account: Account, destinations: Sequence[str], caller: str, params: dict[str, Any],
               *, batch: str | None = None, tag: str | None = None,
               same_ids: bool = False, id_prefix: str = "") -> list[CallRecord]:
        """Create and start the calls of an admitted request (ids are fresh uuid4s)."""
        mono = time.monotonic()
        state = self._state(account, mono)
        # The ledger measures windows at the instant the limiter counted the arrival, not a moment later:
        # otherwise a window it measures can straddle one the limiter saw and count one arrival too many.
        now_mono = state.admitted_at if state.admitted_at is not None else mono
        now = time.time() - (mono - now_mono)
        source = state.admitted_source if state.admitted_at is not None else "handler"
        state.admitted_at = None
        calls = []
        for destination in destinations:
            request_uuid = str(uuid.uuid4())
            call_uuid = request_uuid if same_ids else id_prefix + str(uuid.uuid4())
            call = CallRecord(provider=account.provider, account=account.auth_id, destination=destination,
                              caller=caller, request_uuid=request_uuid, call_uuid=call_uuid, params=params,
                              batch=batch, tag=tag, received_at=now, arrival=source)
            calls.append(call)
            self.calls[call_uuid] = call
            self.calls[request_uuid] = call
        state.live += len(calls)
        state.credit_used += len(calls)
        self.ledger.call_received(calls, now_mono)
        for call in calls:
            place_at = state.pacer.next_slot(now_mono)
            task = asyncio.ensure_future(self._run_call(call, account, state, place_at))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return calls

    def find(self, call_id: str) -> CallRecord | None:
        return self.calls.get(call_id)

    def hang_up(self, call: CallRecord) -> bool:
        """The provider's hang-up API: end a live call now (its hangup callback follows as usual).
        False if it has already ended."""
        if call.status == "completed":
            return False
        call.hung_up_by_api = True
        self.hangups.setdefault(call.call_uuid, asyncio.Event()).set()
        return True

    async def _pause(self, call: CallRecord, seconds: float) -> bool:
        """Sleep `seconds` of real time unless the call is hung up meanwhile; True if it was."""
        event = self.hangups.setdefault(call.call_uuid, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            return False
        return True

    def reset(self) -> None:
        """Clear the ledger and refill the buckets; live calls keep running and holding their slots."""
        now = time.monotonic()
        self.ledger.reset({k: s.live for k, s in self.states.items() if s.live})
        live = {k: c for k, c in self.calls.items() if c.status != "completed"}
        self.calls = live
        for state in self.states.values():
            state.bucket = make_cps_limit(state.kind, state.bucket.rate, now)
            state.pacer = Pacer(state.pacer.rate)
            state.credit_used = 0

    def _draw(self) -> tuple[str, float, float]:
        mix = self.config.outcomes
        weights = [max(0.0, float(getattr(mix, name))) for name in OUTCOMES]
        outcome = self.rng.choices(OUTCOMES, weights)[0] if sum(weights) > 0 else "answered"
        return outcome, self.rng.uniform(*mix.ring_time), self.rng.uniform(*mix.talk_time)

    def _emit(self, call: CallRecord, account: Account, callbacks: list[Callback]) -> None:
        for cb in callbacks:
            self.sender.send(call, cb)

    async def _run_call(self, call: CallRecord, account: Account, state: AccountState,
                        place_at: float) -> None:
        provider = self.providers[account.provider]
        try:
            delay = place_at - time.monotonic()
            if delay > 0 and await self._pause(call, delay):
                call.outcome = "cancelled"  # hung up through the API before it was placed
            else:
                call.outcome = await self._place(call, account, provider)
        finally:
            call.status, call.hangup_at = "completed", time.time()
            if call.outcome is None:
                call.outcome = "failed"
            state.live -= 1
            self.hangups.pop(call.call_uuid, None)
            self.ledger.call_ended(call)
        self._emit(call, account, provider.hangup_callbacks(call, account))

    async def _place(self, call: CallRecord, account: Account, provider: CallbackBuilder) -> str:
        """Ring, maybe answer and talk; returns the outcome (cancelled if hung up through the API first)."""
        speed = self.speed
        call.placed_at = time.time()
        outcome, ring, talk = self._draw()
        params = call.params
        # A request that gives no ring limit (Vobiz has no ring_timeout) rings until the network gives up:
        # no 60 s of the simulator's own may end it (that hid a ring bound the dialer never sent).
        ring_timeout = float(params.get("ring_timeout") or NETWORK_RING_LIMIT_S)
        # Plivo/Vobiz `hangup_on_ring`, counted from the start of ringing: it bounds the ringing only, or
        # ringing and talk, as the account's reading says (config.Account.hangup_on_ring_reading).
        on_ring = float(params.get("hangup_on_ring") or 0)
        on_ring_bounds_talk = account.hangup_on_ring_reading == "call"
        if on_ring:
            ring_timeout = min(ring_timeout, on_ring)
        outcome = params.get("forced_outcome") or outcome  # e.g. VoIPbin actions with no answer
        machine_on = bool(params.get("machine_detection"))
        if outcome == "machine" and not machine_on:
            outcome = "answered"  # a machine picked up but nobody asked the carrier to tell
        if outcome in ("answered", "machine") and ring >= ring_timeout:
            outcome = "no_answer"
        if outcome != "failed":
            call.status, call.ringing_at = "ringing", time.time()
            self.ledger.touch(call)
            self._emit(call, account, provider.ring_callbacks(call, account))
        wait = {"no_answer": ring_timeout, "failed": ring * 0.2}.get(outcome, ring)
        if await self._pause(call, wait / speed):
            return "cancelled"  # hung up while ringing
        if outcome in ("answered", "machine"):
            call.status, call.answered_at = "answered", time.time()
            call.machine = outcome == "machine"
            self.ledger.touch(call)
            self._emit(call, account, provider.answer_callbacks(call, account))
            if call.machine and params.get("machine_hangup"):
                # Hung up once detection decides: within machine_detection_time (default 5000 ms).
                talk = min(talk, float(params.get("machine_detection_time") or 5000) / 1000)
            talk = min(talk, float(params.get("time_limit") or 14400))
            if on_ring and on_ring_bounds_talk:
                talk = max(0.0, min(talk, on_ring - ring))
            talk_started = time.monotonic()
            if await self._pause(call, talk / speed):
                talk = (time.monotonic() - talk_started) * speed  # hung up mid-call: answered, shorter
            call.duration = max(1, math.ceil(talk))
        return outcome
