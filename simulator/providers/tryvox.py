"""TryVox: POST /v1/voice/accounts/{auth_id}/calls with a Bearer key, one E.164 destination, webhooks to
ring_url / answer_url / hangup_url (no signature: TryVox publishes none). The seed
(tryvox-make-call.txt) gives the request fields, their defaults and enums, and the create answer; of the
webhooks it says only what each is for, so their seed shape here is the create answer's fields plus the
hangup's "duration, end reason" (see TryVoxProvider._event)."""

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
            raise ApiError(401, "Invalid API key or account")
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
        return {
            "call_uuid": call.call_uuid, "request_uuid": call.request_uuid, "account_id": account.auth_id,
            "from": call.caller, "to": call.destination, "direction": "outbound", "status": status,
            "duration": call.duration, "start_time": ts_iso(call.placed_at),
            "answer_time": ts_iso(call.answered_at), "end_time": ts_iso(call.hangup_at),
            "end_reason": end_reason, "machine_detected": call.machine,
        }

    async def handle_get(self, request: web.Request) -> web.Response:
        try:
            account = await self.authenticate(request)
            call = self.lookup(request.match_info["call_id"], account)
        except ApiError as exc:
            return self.error(exc.status, exc.message)
        return json_response(self.record(call, account))

    def _event(self, kind: str, call: CallRecord, account: Account, event: str, status: str,
               at: float | None, **more: Any) -> list[Callback]:
        """Seed shape: the create answer's fields (seed l.34-42) with the event's status, plus what the
        seed says a hangup carries ("duration, end reason", l.50). Rich adds the times and flags of
        PROVIDERS.md; form sends the seed shape form-encoded."""
        url = call.params.get(f"{kind}_url")
        if not url:
            return []
        body: dict[str, Any] = {
            "event": event, "request_uuid": call.request_uuid, "call_uuid": call.call_uuid,
            "from": call.caller, "to": call.destination, "direction": "outbound", "status": status,
        }
        if kind == "hangup":
            body.update(duration=call.duration, end_reason=more.pop("end_reason"))
        if account.callback_shape == "rich":
            body.update(account_id=account.auth_id, timestamp=ts_iso(at), **more)
        final = kind == "hangup"
        if account.callback_shape == "form":
            fields = {k: str(v) for k, v in body.items() if v is not None}
            return [Callback(kind=kind, url=url, body=form_encode(fields).encode(), final=final,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})]
        return [json_callback(kind, url, body, final=final)]

    def ring_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        return self._event("ring", call, account, "call.ringing", "ringing", call.ringing_at)

    def answer_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        extra = {"machine_detected": True} if call.machine else {}
        return self._event("answer", call, account, "call.answered", "in-progress", call.answered_at, **extra)

    def hangup_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        status, end_reason = FINAL[call.outcome or "failed"]
        return self._event(
            "hangup", call, account, "call.hangup", status, call.hangup_at, end_reason=end_reason,
            start_time=ts_iso(call.placed_at), answer_time=ts_iso(call.answered_at),
            end_time=ts_iso(call.hangup_at), machine_detected=call.machine,
        )
