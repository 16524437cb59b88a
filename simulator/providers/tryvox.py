"""TryVox: POST /v1/voice/accounts/{auth_id}/calls with a Bearer key, one E.164 destination, webhooks to
ring_url / answer_url / hangup_url (no signature: TryVox publishes none). The seed
(TryVox's Make a Call page) gives the request fields, their defaults and enums, and the create answer; of the
webhooks it says only what each is for, so their seed shape here is the create answer's fields plus the
hangup's "duration, end reason" (see TryVoxProvider._event).

Where the page is silent the account picks a reading (simulator.config.Account, tryvox_*): webhook field
names (snake_case, camelCase, Plivo's PascalCase), `event` names (dotted, plain, none), the machine result
(none, a flag, an end reason), recording URLs on answered hangups (none, one, a list), and whether the
call lookup GET …/calls/{call_uuid} exists at all (it is not on the page)."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from simulator.callbacks import Callback
from simulator.config import Account
from simulator.http_client import form_encode
from simulator.ledger import CallRecord
from simulator.providers.base import (
    E164,
    ApiError,
    CreateRequest,
    Provider,
    is_http_url,
    json_callback,
    json_response,
    positive_int,
    ts_iso,
)

# Webhook and record field names in each reading of tryvox_webhook_fields (snake_case is the create answer's).
CAMEL = {"request_uuid": "requestUuid", "call_uuid": "callUuid", "end_reason": "endReason",
         "start_time": "startTime", "answer_time": "answerTime", "end_time": "endTime",
         "account_id": "accountId", "machine_detected": "machineDetected", "recording_url": "recordingUrl",
         "recording_urls": "recordingUrls"}
PLIVO = {"request_uuid": "RequestUUID", "call_uuid": "CallUUID", "from": "From", "to": "To",
         "direction": "Direction", "status": "CallStatus", "event": "Event", "duration": "Duration",
         "end_reason": "HangupCause", "start_time": "StartTime", "answer_time": "AnswerTime",
         "end_time": "EndTime", "machine_detected": "Machine", "recording_url": "RecordUrl",
         "recording_urls": "RecordUrls"}
FIELD_NAMES = {"snake": {}, "camel": CAMEL, "plivo": PLIVO}
# `event` per webhook in each reading of tryvox_event_names ("none": no event field).
EVENT_NAMES = {"dotted": {"ring": "call.ringing", "answer": "call.answered", "hangup": "call.hangup"},
               "plain": {"ring": "ringing", "answer": "answered", "hangup": "hangup"}}
MACHINE_END_REASON = "answering-machine"  # the tryvox_machine_result "end_reason" reading
# outcome -> (status, end_reason)
FINAL: dict[str, tuple[str, str]] = {
    "answered": ("completed", "callee-hangup"),
    "machine": ("completed", "callee-hangup"),
    "busy": ("busy", "busy"),
    "no_answer": ("no-answer", "no-answer"),
    "failed": ("failed", "failed"),
}
LIVE_STATUS = {"queued": "queued", "ringing": "ringing", "answered": "in-progress"}
ERROR_CODES = {400: "invalid_request", 401: "unauthorized", 402: "payment_required", 404: "not_found",
               429: "rate_limited"}


class TryVoxProvider(Provider):
    name = "tryvox"
    created_status = 201
    auth_failed = "Invalid API key or account"

    @staticmethod
    def renamed(body: dict[str, Any], account: Account) -> dict[str, Any]:
        """`body` (snake_case) under the account's reading of the field names."""
        names = FIELD_NAMES[account.tryvox_webhook_fields]
        return {names.get(key, key): value for key, value in body.items()}

    @staticmethod
    def machine_reading(account: Account) -> str:
        """How this account reports a machine; the rich shape always carries the `machine_detected` flag."""
        reading = account.tryvox_machine_result
        return "flag" if reading == "none" and account.callback_shape == "rich" else reading

    def routes(self) -> list[web.RouteDef]:
        base = "/v1/voice/accounts/{auth_id}/calls"
        return [web.post(base, self.handle_create), web.get(base + "/{call_id}", self.handle_get)]

    def error(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        code = ERROR_CODES.get(status, "server_error")
        return json_response({"error": {"code": code, "message": message, "status": status}}, status)

    async def authenticate(self, request: web.Request) -> Account:
        account = self.account_for(request.match_info["auth_id"])
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if account is None or not hmac.compare_digest(token.encode(), account.auth_token.encode()):
            raise ApiError(401, self.auth_failed)
        return account

    async def parse_create(self, request: web.Request, account: Account) -> CreateRequest:
        body = await self.read_json(request)
        missing = [k for k in ("from", "to", "answer_url") if not body.get(k)]
        if missing:
            raise ApiError(400, f"Missing required field(s): {', '.join(missing)}")
        for key in ("from", "to"):
            if not isinstance(body[key], str) or not E164.match(body[key]):
                raise ApiError(400, f"'{key}' must be an E.164 number (e.g. +14155551234)")
        params: dict[str, Any] = {}
        for kind in ("answer", "ring", "hangup", "fallback"):
            url = body.get(f"{kind}_url")
            if url is not None and not is_http_url(url):
                raise ApiError(400, f"'{kind}_url' must be an http(s) URL")
            params[f"{kind}_url"] = url
        if str(body.get("answer_method", "POST")).upper() not in ("GET", "POST"):
            raise ApiError(400, "'answer_method' must be GET or POST")
        params["answer_method"] = str(body.get("answer_method", "POST")).upper()
        params["ring_timeout"] = positive_int(body.get("ring_timeout", 60), "ring_timeout")
        params["time_limit"] = positive_int(body.get("time_limit", 14400), "time_limit")
        machine = body.get("machine_detection", "Disable")
        if machine not in ("Enable", "Disable"):
            raise ApiError(400, "'machine_detection' must be Enable or Disable")
        params["machine_detection"] = machine == "Enable"
        return CreateRequest(destinations=[body["to"]], caller=body["from"], params=params)

    def created(self, calls: list[CallRecord], req: CreateRequest, account: Account) -> web.Response:
        call = calls[0]
        return json_response({
            "request_uuid": call.request_uuid, "call_uuid": call.call_uuid, "from": call.caller,
            "to": call.destination, "direction": "outbound", "status": "ringing",
            "created_at": ts_iso(call.received_at),
        }, self.created_status)

    def record(self, call: CallRecord, account: Account) -> dict[str, Any]:
        final = call.status == "completed"
        status, end_reason = FINAL[call.outcome or "failed"] if final else (LIVE_STATUS[call.status], None)
        record = {
            "call_uuid": call.call_uuid, "request_uuid": call.request_uuid, "account_id": account.auth_id,
            "from": call.caller, "to": call.destination, "direction": "outbound", "status": status,
            "duration": call.duration, "start_time": ts_iso(call.placed_at),
            "answer_time": ts_iso(call.answered_at), "end_time": ts_iso(call.hangup_at),
            "end_reason": end_reason,
        }
        reading = self.machine_reading(account)
        if reading == "flag":
            record["machine_detected"] = call.machine
        elif reading == "end_reason" and final and call.machine:
            record["end_reason"] = MACHINE_END_REASON
        return self.renamed(record, account)

    async def handle_get(self, request: web.Request) -> web.Response:
        """The assumed call lookup (not on the page): the record by call_uuid, the id "for subsequent
        operations" (Response Fields); a request_uuid names the API request, not the call, and is not found.
        Reading "missing": the carrier has no such endpoint (404 before anything is checked)."""
        known = self.account_for(request.match_info["auth_id"])
        if known is not None and known.tryvox_lookup == "missing":
            return web.Response(status=404, text="404: Not Found")
        try:
            account = await self.authenticate(request)
            call = self.lookup(request.match_info["call_id"], account)
            if call.call_uuid != request.match_info["call_id"]:
                raise ApiError(404, "Call not found")
        except ApiError as exc:
            return self.error(exc.status, exc.message)
        return json_response(self.record(call, account))

    def _event(self, kind: str, call: CallRecord, account: Account, status: str, at: float | None,
               **more: Any) -> list[Callback]:
        """Seed shape: the create answer's fields (page, Response) with the event's status, plus what the seed
        says a hangup carries ("duration, end reason", Webhooks, Hangup URL). Rich adds the times of
        PROVIDERS.md; form sends the seed shape form-encoded. The account's readings name the fields and the
        event, and
        add a machine result and recording URLs where the page leaves them open."""
        url = call.params.get(f"{kind}_url")
        if not url:
            return []
        body: dict[str, Any] = {
            "request_uuid": call.request_uuid, "call_uuid": call.call_uuid,
            "from": call.caller, "to": call.destination, "direction": "outbound", "status": status,
        }
        event = EVENT_NAMES.get(account.tryvox_event_names, {}).get(kind)
        if event:
            body = {"event": event, **body}
        if kind == "hangup":
            body.update(duration=call.duration, end_reason=more.pop("end_reason"))
        self._machine_result(kind, call, account, body)
        if kind == "hangup" and call.outcome in ("answered", "machine"):
            self._recordings(call, account, body)
        if account.callback_shape == "rich":
            body.update(account_id=account.auth_id, timestamp=ts_iso(at), **more)
        body = self.renamed(body, account)
        final = kind == "hangup"
        if account.callback_shape == "form":
            fields = {k: str(v[0] if isinstance(v, list) else v) for k, v in body.items() if v is not None}
            return [Callback(kind=kind, url=url, body=form_encode(fields).encode(), final=final,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})]
        return [json_callback(kind, url, body, final=final)]

    def _machine_result(self, kind: str, call: CallRecord, account: Account, body: dict[str, Any]) -> None:
        """The machine result in this account's reading (only where detection was enabled: call.machine)."""
        reading = self.machine_reading(account)
        if reading == "flag" and (kind == "hangup" or call.machine) and call.params.get("machine_detection"):
            body["machine_detected"] = call.machine
        elif reading == "end_reason" and kind == "hangup" and call.machine:
            body["end_reason"] = MACHINE_END_REASON

    def _recordings(self, call: CallRecord, account: Account, body: dict[str, Any]) -> None:
        """"recording URLs if applicable" (Webhooks, Hangup URL), in this account's reading."""
        url = f"{self.carrier.public_url}/recordings/{call.call_uuid}.mp3"
        if account.tryvox_recordings == "url":
            body["recording_url"] = url
        elif account.tryvox_recordings == "urls":
            body["recording_urls"] = [url, url.replace(".mp3", "-2.mp3")]

    def ring_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        return self._event("ring", call, account, "ringing", call.ringing_at)

    def answer_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        return self._event("answer", call, account, "in-progress", call.answered_at)

    def hangup_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        status, end_reason = FINAL[call.outcome or "failed"]
        return self._event(
            "hangup", call, account, status, call.hangup_at, end_reason=end_reason,
            start_time=ts_iso(call.placed_at), answer_time=ts_iso(call.answered_at),
            end_time=ts_iso(call.hangup_at),
        )
