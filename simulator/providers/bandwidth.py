"""Bandwidth Voice v2: POST /api/v2/accounts/{accountId}/calls (HTTP Basic, camelCase JSON), 201 with
Location; 429 always with Retry-After; answer and disconnect callbacks as JSON, sent with HTTP Basic
using the username/password of the create request.

Per its seed (Bandwidth's Create Call page): Basic auth takes "Dashboard API Credentials" (Basic
Authentication), an API user distinct from the account id: the account's `api_username` with `auth_token` as
its password; the account id as the username is refused. The 201 body is the seed example's fields (Example 1
of 1, 201 answer); a callback_shape "rich" account also gets accountId, enqueuedTime, callbackTimeout and
priority. Fields the seed does not name (callbackTimeout, priority, machineDetection) are still accepted.

Where the seed is silent the account picks a reading (simulator.config.Account, bandwidth_*): whether the
answer to machineDetectionComplete is ignored (Bandwidth's webhook page: change the call through Update
Call) or executed as BXML (its guide), and whether Get Call State and Update Call exist at all."""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import time
import uuid
from typing import Any
from xml.etree import ElementTree

from aiohttp import web

from simulator.callbacks import Callback
from simulator.carrier import Rejection
from simulator.config import Account
from simulator.ledger import CallRecord
from simulator.providers.base import (
    E164,
    ApiError,
    CreateRequest,
    Provider,
    is_http_url,
    json_callback,
    json_response,
    ts_iso,
)

MAX_TAG = 256
# outcome -> (cause, sipResponseCode, errorMessage)
DISCONNECT: dict[str, tuple[str, int, str | None]] = {
    "answered": ("hangup", 200, None), "machine": ("hangup", 200, None),
    "busy": ("busy", 486, "Callee is busy"), "no_answer": ("timeout", 487, "Call timed out"),
    "failed": ("error", 500, "Service unavailable"),
    "cancelled": ("cancel", 487, "Call cancelled"),  # ended through the update-call API before answer
}
STATE = {"queued": "initiated", "ringing": "initiated", "answered": "answered", "completed": "disconnected"}
ERROR_TYPES = {400: "validation", 401: "authentication-error", 403: "forbidden", 404: "not-found"}


class BandwidthProvider(Provider):
    name = "bandwidth"
    created_status = 201
    auth_failed = "Authentication failed"

    def routes(self) -> list[web.RouteDef]:
        base = "/api/v2/accounts/{auth_id}/calls"
        return [web.post(base, self.handle_create), web.post(base + "/", self.handle_create),
                web.get(base + "/{call_id}", self.handle_get),
                web.post(base + "/{call_id}", self.handle_update)]

    def missing_call_api(self, request: web.Request) -> web.Response | None:
        """404 for Get Call State / Update Call when this account's carrier has neither (reading "missing":
        the seed documents only the create call)."""
        account = self.account_for(request.match_info["auth_id"])
        if account is not None and account.bandwidth_call_api == "missing":
            return web.Response(status=404, text="404: Not Found")
        return None

    async def handle_update(self, request: web.Request) -> web.Response:
        """Update Call: {"state": "completed"} hangs it up (200; no effect on a call already ended). Other
        updates (redirectUrl) are not simulated and answered 400 so a test cannot take them for done."""
        missing = self.missing_call_api(request)
        if missing is not None:
            return missing
        try:
            account = await self.authenticate(request)
            call = self.lookup(request.match_info["call_id"], account)
            body = await self.read_json(request)
            if body.get("state") != "completed":
                raise ApiError(400, "only {\"state\": \"completed\"} is simulated")
        except ApiError as exc:
            return self.error(exc.status, exc.message)
        self.carrier.hang_up(call)
        return web.Response(status=200)

    def error(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        body = {"type": ERROR_TYPES.get(status, "error"), "description": message}
        headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else None
        return json_response(body, status, headers)

    def throttled(self, rejection: Rejection) -> web.Response:
        message = {"cps": "Account call creation rate limit exceeded",
                   "concurrency": "Account concurrent call limit exceeded"}[rejection.reason]
        return self.error(429, message, retry_after=rejection.retry_after)

    async def authenticate(self, request: web.Request) -> Account:
        header = request.headers.get("Authorization", "")
        try:
            user, _, password = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, self.auth_failed) from None
        account = self.account_for(request.match_info["auth_id"])
        if account is None:
            raise ApiError(403, "Access to this account is forbidden")
        if user == account.auth_id:
            raise ApiError(401, "Authentication failed: use an API user's credentials, not the account id")
        api_user = account.api_username or ""
        if not header.startswith("Basic ") or not api_user or user != api_user or not hmac.compare_digest(
            password.encode(), account.auth_token.encode()
        ):
            raise ApiError(401, self.auth_failed)
        return account

    async def parse_create(self, request: web.Request, account: Account) -> CreateRequest:
        body = await self.read_json(request)
        for key in ("from", "to", "applicationId", "answerUrl"):
            if not body.get(key):
                raise ApiError(400, f"'{key}' is required")
        for key in ("from", "to"):
            if not isinstance(body[key], str) or not E164.match(body[key]):
                raise ApiError(400, f"Invalid {key}: must be an E164 telephone number")
        if account.application_id is not None and body["applicationId"] != account.application_id:
            raise ApiError(400, f"Invalid applicationId: {body['applicationId']}")
        for key in ("answerUrl", "disconnectUrl"):
            if body.get(key) is not None and not is_http_url(body[key]):
                raise ApiError(400, f"Invalid {key}: must be an http(s) URL")
        # page, Supported Parameters: `answerMethod`, `disconnectMethod`: GET or POST
        for key in ("answerMethod", "disconnectMethod"):
            if body.get(key) is not None and body[key] not in ("GET", "POST"):
                raise ApiError(400, f"Invalid {key}: must be GET or POST")
        call_timeout = _number(body.get("callTimeout", 30), "callTimeout", 1, 300)
        callback_timeout = _number(body.get("callbackTimeout", 15), "callbackTimeout", 1, 25)
        tag = body.get("tag")
        if tag is not None and (not isinstance(tag, str) or len(tag) > MAX_TAG):
            raise ApiError(400, f"Invalid tag: at most {MAX_TAG} characters")
        machine = body.get("machineDetection")
        if machine is not None and not isinstance(machine, dict):
            raise ApiError(400, "Invalid machineDetection: must be an object")
        params = {key: body.get(key) for key in (
            "applicationId", "answerUrl", "answerMethod", "disconnectUrl", "disconnectMethod",
            "username", "password", "priority")}
        params.update(ring_timeout=call_timeout, callTimeout=call_timeout, callbackTimeout=callback_timeout,
                      machine_detection=machine is not None, machineDetection=machine)
        params["answerMethod"] = params["answerMethod"] or "POST"
        params["disconnectMethod"] = params["disconnectMethod"] or "POST"
        params["priority"] = params["priority"] or 5
        return CreateRequest(destinations=[body["to"]], caller=body["from"], params=params, tag=tag,
                             extra={"accept": {"id_prefix": "c-"}})

    def call_url(self, request_or_host: str, call: CallRecord) -> str:
        return f"{request_or_host}/api/v2/accounts/{call.account}/calls/{call.call_uuid}"

    def created(self, calls: list[CallRecord], req: CreateRequest, account: Account) -> web.Response:
        call = calls[0]
        call.params["callUrl"] = url = self.call_url(self.carrier.public_url, call)
        p = call.params
        body = {  # the seed's example answer (Example 1 of 1, 201 answer)
            "from": call.caller, "to": call.destination, "applicationId": p["applicationId"],
            "callId": call.call_uuid, "callUrl": url, "callTimeout": p["callTimeout"],
            "answerUrl": p["answerUrl"], "answerMethod": p["answerMethod"],
            "disconnectUrl": p["disconnectUrl"], "disconnectMethod": p["disconnectMethod"],
            "username": p["username"], "password": p["password"],
            "tag": call.tag,
        }
        if account.callback_shape == "rich":
            body.update(accountId=account.auth_id, enqueuedTime=ts_iso(call.received_at),
                        callbackTimeout=p["callbackTimeout"], priority=p["priority"])
        return json_response(body, self.created_status, {"Location": url})

    async def handle_get(self, request: web.Request) -> web.Response:
        missing = self.missing_call_api(request)
        if missing is not None:
            return missing
        try:
            account = await self.authenticate(request)
            call = self.lookup(request.match_info["call_id"], account)
        except ApiError as exc:
            return self.error(exc.status, exc.message)
        cause, _sip, message = DISCONNECT[call.outcome or "failed"] if call.status == "completed" else (
            None, 0, None)
        return json_response({
            "applicationId": call.params["applicationId"], "accountId": account.auth_id,
            "callId": call.call_uuid, "parentCallId": None, "to": call.destination, "from": call.caller,
            "direction": "outbound", "state": STATE[call.status], "stirShaken": None, "identity": None,
            "enqueuedTime": ts_iso(call.received_at), "startTime": ts_iso(call.placed_at),
            "answerTime": ts_iso(call.answered_at), "endTime": ts_iso(call.hangup_at),
            "disconnectCause": cause, "errorMessage": message, "errorId": None,
            "lastUpdate": ts_iso(call.hangup_at or call.answered_at or call.placed_at or call.received_at),
        })

    def _common(self, call: CallRecord, account: Account, event: str, at: float | None) -> dict[str, Any]:
        return {
            "eventType": event, "eventTime": ts_iso(at), "accountId": account.auth_id,
            "applicationId": call.params["applicationId"], "from": call.caller, "to": call.destination,
            "direction": "outbound", "callId": call.call_uuid, "callUrl": call.params.get("callUrl"),
            "enqueuedTime": ts_iso(call.received_at), "startTime": ts_iso(call.placed_at),
            "answerTime": ts_iso(call.answered_at), "tag": call.tag,
        }

    def _send(self, kind: str, url: str | None, method: str, body: dict[str, Any], call: CallRecord,
              *, final: bool = False) -> list[Callback]:
        if not url:
            return []
        p = call.params
        auth = (p["username"], p["password"]) if p.get("username") and p.get("password") else None
        if method == "GET":
            query = {k: str(v) for k, v in body.items() if v is not None}
            return [Callback(kind=kind, url=url, method="GET", params=query, auth=auth, final=final)]
        return [json_callback(kind, url, body, final=final, auth=auth)]

    def answer_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        p = call.params
        out = self._send("answer", p["answerUrl"], p["answerMethod"],
                         self._common(call, account, "answer", call.answered_at), call)
        for cb in out:
            cb.on_reply = lambda document: self.gather_callbacks(call, account, document)
        machine = p.get("machineDetection")
        if machine is not None:
            body = self._common(call, account, "machineDetectionComplete", call.answered_at)
            value = "answering-machine" if call.machine else "human"
            body["machineDetectionResult"] = {"value": value, "duration": "PT4.2S"}
            url = machine.get("callbackUrl") or p["answerUrl"]
            detected = self._send("machine", url, machine.get("callbackMethod", "POST"), body, call)
            if account.bandwidth_machine_reply == "bxml":
                for cb in detected:
                    cb.on_reply = lambda document: self.machine_reply(call, document)
            out += detected
        return out

    def machine_reply(self, call: CallRecord, document: bytes) -> list[Callback]:
        """Reading "bxml": the answer to machineDetectionComplete runs in the call, and a <Hangup/> in it ends
        the call (as the hang-up API does: the disconnect follows)."""
        if _has_verb(document, "Hangup"):
            self.carrier.hang_up(call)
        return []

    def gather_callbacks(self, call: CallRecord, account: Account, document: bytes) -> list[Callback]:
        """The answer BXML's <Gather gatherUrl=…>: if this callee presses keys (config `keypresses`), a
        JSON `gather` event goes to gatherUrl with the Gather's username/password as Basic auth."""
        digits = self.carrier.config.keypresses.get(call.destination)
        gather = _first_gather(document)
        if not digits or gather is None or not gather.get("gatherUrl"):
            return []
        body = self._common(call, account, "gather", time.time())
        body.update(digits=digits, terminatingDigit="")
        username, password = gather.get("username"), gather.get("password")
        auth = (username, password) if username and password else None
        return [json_callback("keypress", gather["gatherUrl"], body, auth=auth)]

    def hangup_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        p = call.params
        cause, sip, message = DISCONNECT[call.outcome or "failed"]
        body = self._common(call, account, "disconnect", call.hangup_at)
        body.update(endTime=ts_iso(call.hangup_at), cause=cause, errorMessage=message,
                    errorId=str(uuid.uuid4()) if cause == "error" else None,
                    sipCallId=f"{call.call_uuid}@sim.bandwidth", sipResponseCode=sip)
        return self._send("hangup", p["disconnectUrl"], p["disconnectMethod"], body, call, final=True)


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ApiError(400, f"Invalid {name}: must be a number between {low:g} and {high:g}")
    return value


def _has_verb(document: bytes, verb: str) -> bool:
    """Whether a BXML document holds `verb` (False when it is empty or not XML)."""
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError:
        return False
    return root.tag == verb or root.find(f".//{verb}") is not None


def _first_gather(document: bytes) -> dict[str, str] | None:
    """The attributes of an answer document's first <Gather>, or None (none, or not XML)."""
    try:
        element = ElementTree.fromstring(document).find(".//Gather")
    except ElementTree.ParseError:
        return None
    return dict(element.attrib) if element is not None else None
