"""Plivo: POST /v1/Account/{auth_id}/Call/ (HTTP Basic, JSON or form), bulk `to` joined by `<`,
form-encoded callbacks signed with X-Plivo-Signature-V3. Vobiz subclasses this (providers/vobiz.py).

Seed-shaped by default (Plivo's Make a call page, the parameters sent to ring_url, answer_url and hangup_url):
the hangup_url gets CallStatus "completed" always, StartTime/EndTime, AnswerTime only when answered (times in
the account's console zone), and no HangupCause*/Duration/BillDuration. An account with callback_shape "rich"
gets those too (the fuller shape Plivo's other docs describe). Validation follows the seed: from/to/answer_url
required, machine_detection only "true"/"hangup", machine_detection_time 2000-10000, caller_name <= 50,
positive ring_timeout/time_limit/hangup_on_ring, at most 1000 unique destinations, every one of them valid.
"""

from __future__ import annotations

import base64
import binascii
import math
import random
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from xml.etree import ElementTree

from aiohttp import web

from simulator import signing
from simulator.callbacks import Callback
from simulator.config import Account
from simulator.http_client import form_encode
from simulator.ledger import CallRecord
from simulator.providers.base import (
    PLAIN_NUMBER,
    ApiError,
    CreateRequest,
    Provider,
    is_http_url,
    json_response,
    new_id,
    positive_int,
    ts_plain,
)

MAX_BULK = 1000
MACHINE_RANGES = (("machine_detection_time", 2000, 10000),)

# outcome -> (CallStatus, HangupCause, HangupCauseName, HangupCauseCode, HangupSource)
HANGUP_CAUSES: dict[str, tuple[str, str, str, int, str]] = {
    "answered": ("completed", "NORMAL_CLEARING", "Normal Hangup", 4000, "Callee"),
    "machine": ("completed", "NORMAL_CLEARING", "Normal Hangup", 4000, "Callee"),
    "busy": ("busy", "USER_BUSY", "Busy Line", 3010, "Callee"),
    "no_answer": ("no-answer", "NO_ANSWER", "No Answer", 3000, "{platform}"),
    "failed": ("failed", "DESTINATION_OUT_OF_ORDER", "Destination Out Of Service", 2010, "Carrier"),
    # Ended through the hang-up API (DELETE …/Call/{uuid}/) before it was answered.
    "cancelled": ("cancel", "ORIGINATOR_CANCEL", "Cancelled Call", 1000, "API Request"),
}
LIVE_STATUS = {"queued": "queued", "ringing": "ringing", "answered": "in-progress"}
# digits, w (0.5 s), W (1 s), @tone ms (page, Arguments: `send_digits`)
SEND_DIGITS = re.compile(r"^[0-9*#wW]+(@[0-9]+)?$")
# "integers and uppercase and lowercase letters" (Arguments: `sip_headers`)
SIP_HEADER_PART = re.compile(r"^[A-Za-z0-9]+$")
MAX_RETRY_COUNT = 5  # Plivo's callback configuration: rc 0-5


class PlivoProvider(Provider):
    name = "plivo"
    prefix = "/v1"
    platform = "Plivo"
    created_status = 201
    auth_failed = "Authentication credentials invalid"
    fired = ("call fired", "calls fired")
    # plivo page, answer_url parameters: `stir_verification`; Vobiz's answer says STIRVerification (Parameters
    # Sent to answer_url and fallback_url: `STIRVerification`)
    answer_stir_field = "stir_verification"
    # Plivo Arguments: `to`: at most 1000 *unique* destinations; Vobiz Required Parameters: `to` counts all
    unique_destinations_limit = True
    # Plivo Arguments: `sip_headers`; Vobiz's page has no sip_headers (an unknown field, ignored)
    takes_sip_headers = True
    retry_configurable = True  # Plivo: "Callback-retry configurable" URLs; Vobiz's page says nothing of it

    def routes(self) -> list[web.RouteDef]:
        base = self.prefix + "/Account/{auth_id}/Call/"
        return [
            web.post(base, self.handle_create),
            web.get(base, self.handle_list),
            web.get(base + "{call_id}/", self.handle_get),
            # Hang up a call by its CallUUID, or a request not yet placed by its RequestUUID: 204, or
            # 404 when it is not live (Plivo's "Hangup a call" / "Cancel a queued call").
            web.delete(base + "{call_id}/", self.handle_hangup),
            web.delete(self.prefix + "/Account/{auth_id}/Request/{call_id}/", self.handle_hangup),
        ]

    def error(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        return json_response({"api_id": new_id(), "error": message}, status)

    async def authenticate(self, request: web.Request) -> Account:
        header = request.headers.get("Authorization", "")
        try:
            decoded = base64.b64decode(header.removeprefix("Basic "), validate=True).decode()
            user, _, token = decoded.partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, self.auth_failed) from None
        account = self.account_for(user)
        if not header.startswith("Basic ") or account is None or account.auth_token != token:
            raise ApiError(401, self.auth_failed)
        if request.match_info["auth_id"] != user:
            raise ApiError(404, "Account not found")
        return account

    async def read_body(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return await self.read_json(request)
        form = await request.post()
        return {k: v for k, v in form.items() if isinstance(v, str)}

    async def parse_create(self, request: web.Request, account: Account) -> CreateRequest:
        body = await self.read_body(request)
        missing = [k for k in ("from", "to", "answer_url") if not body.get(k)]
        if missing:
            raise ApiError(400, f"Missing mandatory parameter(s): {', '.join(missing)}")
        caller = str(body["from"])
        if not PLAIN_NUMBER.match(caller):
            raise ApiError(400, f"Invalid 'from' number: {caller}")
        params = self._callback_params(body)
        given = [d.strip() for d in str(body["to"]).split("<") if d.strip()]
        destinations = list(dict.fromkeys(given))
        if len(destinations if self.unique_destinations_limit else given) > MAX_BULK:
            which = "unique destinations" if self.unique_destinations_limit else "destinations"
            raise ApiError(400, f"Too many destinations: at most {MAX_BULK} {which} allowed")
        invalid = [d for d in destinations if not (PLAIN_NUMBER.match(d) or _is_sip(d))]
        if invalid or not destinations:
            # The seed documents no partial acceptance: a malformed `to` is a 400 for the whole request.
            raise ApiError(400, f"Invalid destination number(s): {'<'.join(invalid) or '(none)'}")
        api_id = new_id()
        return CreateRequest(destinations=destinations, caller=caller, params=params,
                             batch=api_id if len(destinations) > 1 else None,
                             extra={"api_id": api_id, "accept": self._accept_options()})

    def _accept_options(self) -> dict[str, Any]:
        return {}

    def _limits(self, body: dict[str, Any], params: dict[str, Any]) -> None:
        """Plivo's numeric fields (page, Arguments); Vobiz overrides with its own."""
        params["ring_timeout"] = positive_int(body.get("ring_timeout", 120), "ring_timeout")
        for name, low, high in MACHINE_RANGES:
            if body.get(name) is not None:
                positive_int(body[name], name, low=low, high=high)

    def _callback_params(self, body: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {"answer_url": body["answer_url"]}
        for kind in ("answer", "ring", "hangup", "fallback", "machine_detection"):
            url = body.get(f"{kind}_url")
            if url is not None and not is_http_url(url):
                raise ApiError(400, f"Invalid {kind}_url: must be an http(s) URL")
            method = str(body.get(f"{kind}_method") or "POST").upper()
            if method not in ("GET", "POST"):
                raise ApiError(400, f"{kind}_method must be GET or POST")
            params[f"{kind}_url"], params[f"{kind}_method"] = url, method
        self._limits(body, params)
        params["time_limit"] = positive_int(body.get("time_limit", 14400), "time_limit")
        if body.get("hangup_on_ring") is not None:
            params["hangup_on_ring"] = positive_int(body["hangup_on_ring"], "hangup_on_ring")
        caller_name = body.get("caller_name")
        if caller_name is not None and len(str(caller_name)) > 50:
            raise ApiError(400, "caller_name must be at most 50 characters")
        params["caller_name"] = caller_name
        digits = body.get("send_digits")
        if digits is not None and not SEND_DIGITS.match(str(digits)):
            raise ApiError(400, "send_digits: digits, w, W and an optional @duration only")
        params["send_digits"] = digits
        if body.get("machine_detection_time") is not None:
            params["machine_detection_time"] = int(body["machine_detection_time"])  # range checked in _limits
        params["sip_headers"] = parse_sip_headers(body.get("sip_headers")) if self.takes_sip_headers else {}
        machine = body.get("machine_detection")
        if machine is True:
            machine = "true"
        if machine is not None and machine not in ("true", "hangup"):
            raise ApiError(400, f"machine_detection must be true or hangup, not {machine!r}")
        params["machine_detection"] = machine is not None
        params["machine_hangup"] = machine == "hangup"
        return params

    def created(self, calls: list[CallRecord], req: CreateRequest, account: Account) -> web.Response:
        body: dict[str, Any] = {"api_id": req.extra["api_id"]}
        if len(calls) == 1:
            body.update(message=self.fired[0], request_uuid=calls[0].request_uuid)
        else:
            body.update(message=self.fired[1], request_uuid=self.bulk_request_uuid(calls, account))
        return json_response(body, self.created_status)

    def bulk_request_uuid(self, calls: list[CallRecord], account: Account) -> str | list[str]:
        """Plivo: a list of the calls' request uuids, in no documented order relative to `to`."""
        uuids = [c.request_uuid for c in calls]
        random.shuffle(uuids)
        return uuids

    # lookups -----------------------------------------------------------------
    def detail(self, call: CallRecord) -> dict[str, Any]:
        account = self.accounts.get(call.account)
        zone = account.time_zone if account is not None else "UTC"
        final = call.status == "completed"
        status, _cause, name, code, source = HANGUP_CAUSES[call.outcome or "failed"] if final else (
            LIVE_STATUS[call.status], "", "", 0, "")
        return {
            "api_id": new_id(), "call_uuid": call.call_uuid, "request_uuid": call.request_uuid,
            "parent_call_uuid": None, "call_direction": "outbound", "call_status": status,
            "from_number": call.caller, "to_number": call.destination,
            "initiation_time": ts_plain(call.placed_at, zone),
            "answer_time": ts_plain(call.answered_at, zone) or None,
            "end_time": ts_plain(call.hangup_at, zone) or None, "call_duration": call.duration,
            "bill_duration": _billed(call.duration), "billed_duration": _billed(call.duration),
            "hangup_cause_name": name or None, "hangup_cause_code": code or None,
            "hangup_source": source.format(platform=self.platform) or None,
            "total_amount": "0.00000", "total_rate": "0.00000", "machine": call.machine,
        }

    async def handle_get(self, request: web.Request) -> web.Response:
        try:
            account = await self.authenticate(request)
            call = self.lookup(request.match_info["call_id"], account)
            if call.call_uuid != request.match_info["call_id"]:
                # Plivo's Call retrieve takes a call_uuid; a request_uuid differs from it (Vobiz: same ids).
                raise ApiError(404, "Call not found")
            if request.query.get("status") == "live" and call.status == "completed":
                raise ApiError(404, "Call not found")
        except ApiError as exc:
            return self.error(exc.status, exc.message)
        return json_response(self.detail(call))

    async def handle_list(self, request: web.Request) -> web.Response:
        """GET .../Call/?request_uuid=… (or ?call_uuid=…): the matching records."""
        try:
            account = await self.authenticate(request)
        except ApiError as exc:
            return self.error(exc.status, exc.message)
        wanted = request.query.get("request_uuid") or request.query.get("call_uuid")
        call = self.carrier.find(wanted) if wanted else None
        objects = [self.detail(call)] if call is not None and call.account == account.auth_id else []
        if request.query.get("status") == "live":
            objects = [o for o in objects if o["end_time"] is None]
        meta = {"count": len(objects), "limit": 20, "offset": 0, "next": None, "previous": None}
        return json_response({"api_id": new_id(), "meta": meta, "objects": objects})

    # callbacks ---------------------------------------------------------------
    def _base_fields(self, call: CallRecord, event: str, status: str) -> dict[str, str]:
        """The fields every callback of the seed carries (the ring_url parameters)."""
        fields = {
            "From": call.caller, "To": call.destination, "RequestUUID": call.request_uuid,
            "ALegRequestUUID": call.request_uuid, "CallUUID": call.call_uuid,
            "Direction": "outbound", "Event": event, "CallStatus": status,
            "SessionStart": _session_start(call.ringing_at or call.placed_at),
            "STIRAttestation": "Not Applicable",
        }
        # page, Arguments: `machine_detection`: every URL the call invokes gets the machine parameter
        if call.machine:
            fields[self.machine_field(call)] = "true"
        # sip_headers (Arguments: `sip_headers`): prefixed X-PH- and "present for all the HTTP requests" of
        # the call: sent as parameters, as Plivo's callbacks carry them.
        for key, value in (call.params.get("sip_headers") or {}).items():
            fields[f"X-PH-{key}"] = value
        return fields

    def machine_field(self, call: CallRecord) -> str:
        """The "machine parameter" (page, Arguments) as this account spells it: `Machine` or `machine`."""
        account = self.accounts.get(call.account)
        return account.machine_field if account is not None else "Machine"

    def sign(self, method: str, url: str, fields: dict[str, str], account: Account) -> dict[str, str]:
        return signing.plivo_headers(method, url, fields, account.auth_token)

    def _form_callback(self, kind: str, call: CallRecord, account: Account, fields: dict[str, str],
                       *, final: bool = False) -> list[Callback]:
        url, method = call.params.get(f"{kind}_url"), call.params.get(f"{kind}_method", "POST")
        if not url:
            return []
        attempts = self.callback_attempts(url, account)
        url = url.split("#", 1)[0]  # Plivo retry fragments are never sent
        headers = self.sign(method, url, fields, account)
        if method == "GET":
            return [Callback(kind=kind, url=url, method="GET", params=fields, headers=headers, final=final,
                             attempts=attempts)]
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return [Callback(kind=kind, url=url, body=form_encode(fields).encode(), headers=headers, final=final,
                         attempts=attempts)]

    def callback_attempts(self, url: str, account: Account) -> int | None:
        """Attempts at this URL when the customer configured its retries (`rc`, 0-5 retries), read where the
        account's reading puts it: the URL's fragment (Plivo's callback configuration page) or its query.
        None: the carrier's default policy."""
        if not self.retry_configurable:
            return None
        parts = urlsplit(url)
        where = parts.fragment if account.callback_retry_form == "fragment" else parts.query
        rc = dict(parse_qsl(where)).get("rc")
        if rc is None or not rc.isdigit() or int(rc) > MAX_RETRY_COUNT:
            return None  # absent or out of range: the default applies
        return int(rc) + 1

    def ring_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        return self._form_callback("ring", call, account, self._base_fields(call, "Ring", "ringing"))

    def answer_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        fields = self._base_fields(call, "StartApp", "in-progress")  # page, answer_url parameters
        fields.update({"ALegUUID": call.call_uuid, self.answer_stir_field: "Not Applicable"})
        callbacks = self._form_callback("answer", call, account, fields)
        for cb in callbacks:
            cb.on_reply = lambda document: self.keypress_callbacks(call, account, document)
        return callbacks

    def keypress_callbacks(self, call: CallRecord, account: Account, document: bytes) -> list[Callback]:
        """The answer XML's <GetDigits action=…>: if this callee presses keys (config `keypresses`), the
        action URL gets the call's parameters plus `Digits`, form-encoded and signed like any callback."""
        digits = self.carrier.config.keypresses.get(call.destination)
        action = get_digits_action(document)
        if not digits or action is None:
            return []
        fields = self._base_fields(call, "", "in-progress")
        del fields["Event"]  # an action URL is not a lifecycle event
        fields["Digits"] = digits
        headers = self.sign("POST", action, fields, account)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return [Callback(kind="keypress", url=action, body=form_encode(fields).encode(), headers=headers)]

    def hangup_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        zone = account.time_zone
        if account.callback_shape == "rich":
            status, cause, name, code, source = HANGUP_CAUSES[call.outcome or "failed"]
        else:
            # page, hangup_url parameters: `CallStatus`: "This will have the value 'completed'"
            status = "completed"
        fields = self._base_fields(call, "Hangup", status)  # page, hangup_url parameters
        fields.update(ALegUUID=call.call_uuid, stir_verification="Not Applicable",
                      StartTime=ts_plain(call.placed_at, zone), EndTime=ts_plain(call.hangup_at, zone))
        if call.answered_at is not None:
            fields["AnswerTime"] = ts_plain(call.answered_at, zone)
        if call.machine and call.params.get("machine_hangup"):
            # page, Arguments: `machine_detection`, machine_detection=hangup
            fields[self.machine_field(call)] = "machine_detection"
        if account.callback_shape == "rich":
            fields.update(
                HangupCause=cause, HangupCauseName=name, HangupCauseCode=str(code),
                HangupSource=source.format(platform=self.platform), Duration=str(call.duration),
                BillDuration=str(_billed(call.duration)), TotalCost="0.00000", BillRate="0.00000",
            )
        return self._form_callback("hangup", call, account, fields, final=True)


def parse_sip_headers(value: Any) -> dict[str, str]:
    """`head1=val1,head2=val2` (page, Arguments, `sip_headers`): keys and values letters and digits only, else
    400."""
    if value is None or value == "":
        return {}
    headers: dict[str, str] = {}
    for pair in str(value).split(","):
        key, sep, header_value = pair.partition("=")
        if not sep or not SIP_HEADER_PART.match(key) or not SIP_HEADER_PART.match(header_value):
            raise ApiError(400, f"sip_headers: {pair!r} is not key=value of letters and digits")
        headers[key] = header_value
    return headers


def _session_start(epoch: float | None) -> str:
    """YYYY-MM-DD HH:mm:ss.sssss in UTC (page, the callbacks' `SessionStart`), whatever the console zone."""
    return ts_plain(epoch) + f".{int((epoch or 0) % 1 * 100000):05d}"


def _billed(duration: int) -> int:
    return 60 * math.ceil(duration / 60) if duration > 0 else 0


def _is_sip(destination: str) -> bool:
    return destination.startswith("sip:") and "@" in destination


def get_digits_action(document: bytes) -> str | None:
    """The action URL of an answer document's first <GetDigits>, or None (none, or not XML)."""
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError:
        return None
    element = root.find(".//GetDigits")
    return element.get("action") if element is not None else None
