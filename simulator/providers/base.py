"""What every provider module shares: the create-call template (faults, auth, validation, credit,
limits, acceptance), error answers in the provider's shape, and small formatting helpers."""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web

from simulator import stamping
from simulator.callbacks import Callback
from simulator.carrier import Carrier, Rejection
from simulator.config import Account
from simulator.ledger import CallRecord

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
NO_CREDIT = "Insufficient balance to place the call"  # the 402 of every provider (Account.credit)
PLAIN_NUMBER = re.compile(r"^\+?[1-9]\d{6,14}$")


class ApiError(Exception):
    """A create/lookup request the provider refuses with `status` and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class CreateRequest:
    """A validated creation request in the carrier's words."""

    destinations: list[str]
    caller: str
    params: dict[str, Any]
    batch: str | None = None
    tag: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # provider-specific, for the response


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers,
                        content_type="application/json")


def is_http_url(value: Any) -> bool:
    return isinstance(value, str) and (value.startswith("http://") or value.startswith("https://"))


def ts_plain(epoch: float | None, zone: str = "UTC") -> str:
    """yyyy-MM-dd HH:mm:ss in `zone` (Plivo/Vobiz: the console's local time zone; UTC by default)."""
    if epoch is None:
        return ""
    if zone == "UTC":
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))
    return datetime.fromtimestamp(epoch, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")


def ts_iso(epoch: float | None) -> str | None:
    """ISO 8601 with milliseconds and Z (TryVox, Bandwidth)."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def positive_int(value: Any, name: str, *, low: float = 1, high: float = 10**9) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"{name} must be an integer") from None
    if not low <= number <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}")
    return number


def new_id() -> str:
    return str(uuid.uuid4())


def json_callback(kind: str, url: str, body: dict[str, Any], *, final: bool = False,
                  headers: dict[str, str] | None = None, **kwargs: Any) -> Callback:
    return Callback(kind=kind, url=url, body=orjson.dumps(body),
                    headers={"Content-Type": "application/json", **(headers or {})}, final=final, **kwargs)


class Provider:
    """Base of the five provider modules; subclasses fill the hooks."""

    name: ClassVar[str]
    created_status: ClassVar[int] = 201
    auth_failed: ClassVar[str]  # the message of its 401 to bad credentials (a scheduled "401" answers it too)

    def __init__(self, carrier: Carrier) -> None:
        self.carrier = carrier

    @property
    def accounts(self) -> dict[str, Account]:
        return self.carrier.config.accounts

    def account_for(self, auth_id: str | None) -> Account | None:
        account = self.accounts.get(auth_id or "")
        return account if account is not None and account.provider == self.name else None

    # hooks ---------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def error(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        raise NotImplementedError

    async def authenticate(self, request: web.Request) -> Account:
        raise NotImplementedError

    async def parse_create(self, request: web.Request, account: Account) -> CreateRequest:
        raise NotImplementedError

    def created(self, calls: list[CallRecord], req: CreateRequest, account: Account) -> web.Response:
        raise NotImplementedError

    def throttled(self, rejection: Rejection) -> web.Response:
        """429 without Retry-After (Plivo, Vobiz, TryVox and VoIPbin document none)."""
        return self.error(429, f"Too many requests: {rejection.message}")

    def ring_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        return []

    def answer_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        return []

    def hangup_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        return []

    # template ------------------------------------------------------------
    def fail(self, request: web.Request, account: Account | None, status: int, message: str,
             fault: str | None = None) -> web.Response:
        """The error answer, recorded in the ledger (`fault`: the scheduled fault that caused it)."""
        self.carrier.ledger.api_error(account.auth_id if account else None, self.name, status, message,
                                      request.path, fault)
        return self.error(status, message)

    async def handle_create(self, request: web.Request) -> web.StreamResponse:
        carrier = self.carrier
        faults = carrier.config.faults
        rng = carrier.fault_rng
        account: Account | None = None
        scheduled: str | None = None
        delay = carrier.arrival_delay()  # the network in front of the carrier's limiter
        kernel = carrier.arrival_stamp == "kernel"
        if delay > 0 and not kernel:
            await asyncio.sleep(delay)  # the limiter counts the request when it arrives: after the delay
        try:
            account = await self.authenticate(request)
            # A timed fault of this account (simulator/schedule.py), decided as the request arrives.
            scheduled = carrier.schedule.active(account.auth_id)
            if scheduled == "401":
                # Credentials revoked: the very answer this provider gives bad credentials.
                return self.fail(request, account, 401, self.auth_failed, scheduled)
            if scheduled == "5xx":
                # An outage, not the limiter: no Retry-After, nothing placed.
                return self.fail(request, account, 503, "Service unavailable (scheduled outage)", scheduled)
            if faults.api_slow and rng.random() < faults.api_slow:
                await asyncio.sleep(faults.api_slow_seconds)
            if faults.api_5xx and rng.random() < faults.api_5xx:
                status = rng.choice((500, 502, 503))
                return self.fail(request, account, status, "Internal server error (simulated)")
            if faults.api_503 and rng.random() < faults.api_503:
                return self.unavailable(request, account, faults.api_503_retry_after)
            req = await self.parse_create(request, account)
            if scheduled == "402":  # where the credit check answers: a malformed request still gets its 400
                return self.fail(request, account, 402, NO_CREDIT, scheduled)
            if not carrier.has_credit(account, len(req.destinations)):
                raise ApiError(402, NO_CREDIT)
        except ApiError as exc:
            return self.fail(request, account, exc.status, exc.message)
        if faults.api_429 and rng.random() < faults.api_429:
            # A carrier exactly at budget refusing one send it counted a little early: nothing is placed.
            carrier.ledger.rejected(account.auth_id, account.provider, "cps", len(req.destinations), 0.01)
            return self.throttled(Rejection("cps", "call creation rate limit exceeded (simulated)", 0.01))
        arrival, source = await self._arrival(request, delay, kernel)
        rejection = carrier.admit(account, len(req.destinations), arrival, source)
        if rejection is not None:
            return self.throttled(rejection)
        calls = carrier.accept(account, req.destinations, req.caller, req.params, batch=req.batch,
                               tag=req.tag, **req.extra.get("accept", {}))
        if faults.api_no_answer and rng.random() < faults.api_no_answer:
            await asyncio.sleep(faults.api_no_answer_seconds)  # placed, but the client never hears back
        placed_error = self.placed_but_errored(request, account, calls, scheduled)
        return placed_error if placed_error is not None else self.created(calls, req, account)

    def placed_but_errored(self, request: web.Request, account: Account, calls: list[CallRecord],
                           scheduled: str | None) -> web.Response | None:
        """Placed (the calls run and send their real callbacks), yet the answer is a gateway error: 502 in a
        scheduled placed_5xx window, 502 or 504 for the api_placed_5xx fraction; None: answer as usual."""
        faults, rng = self.carrier.config.faults, self.carrier.fault_rng
        if scheduled == "placed_5xx":
            status, why = 502, "scheduled"
        elif faults.api_placed_5xx and rng.random() < faults.api_placed_5xx:
            status, why, scheduled = rng.choice((502, 504)), "simulated", None
        else:
            return None
        self.carrier.ledger.placed_but_errored([c.request_uuid for c in calls], status)
        return self.fail(request, account, status, f"Bad gateway ({why}; the calls were placed)", scheduled)

    async def _arrival(self, request: web.Request, delay: float, kernel: bool) -> tuple[float, str]:
        """The monotonic instant the limiter counts this request at, and where it came from: the kernel's
        receive time of its last bytes plus the network delay (waiting out what is left of that delay, so
        no request is judged before it has arrived), or without a kernel stamp the handler's clock now."""
        now = time.monotonic()
        received = stamping.received_at(request.transport, now) if kernel else None
        if received is None:
            if kernel and delay > 0:
                await asyncio.sleep(delay)
                now = time.monotonic()
            return now, "handler"
        arrival = received + delay
        if arrival > now:
            await asyncio.sleep(arrival - now)
        return arrival, "kernel"

    def unavailable(self, request: web.Request, account: Account, retry_after: float) -> web.Response:
        """503 from the limiter with Retry-After: nothing was placed, try again after that long."""
        response = self.fail(request, account, 503, "Service unavailable: call creation rate limited")
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        return response

    async def handle_hangup(self, request: web.Request) -> web.Response:
        """A hang-up request by call id: 204 if the call was live, 404 if unknown or already ended."""
        try:
            account = await self.authenticate(request)
            call = self.lookup(request.match_info["call_id"], account)
            if not self.carrier.hang_up(call):
                raise ApiError(404, "Call not found")
        except ApiError as exc:
            return self.error(exc.status, exc.message)
        return web.Response(status=204)

    def lookup(self, call_id: str, account: Account) -> CallRecord:
        call = self.carrier.find(call_id)
        if call is None or call.account != account.auth_id:
            raise ApiError(404, "Call not found")
        return call

    async def read_json(self, request: web.Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise ApiError(400, "Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Request body must be a JSON object")
        return body
