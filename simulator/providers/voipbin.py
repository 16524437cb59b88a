"""VoIPbin: POST /v1.0/calls?token=… (and /v1.0/groupcalls), E.164 with + only, 200 with a list of
call objects; every call event goes to the customer's webhook_uri as {"type", "data"}, signed with
X-VoIPBIN-Signature: sha256=<hex HMAC(webhook_secret, raw body)> when a secret is set.

The actions the seed shows are checked as strictly as their shape there: `talk` needs `option.text`
(VoIPbin's Call tutorial, Simple outbound call with TTS), `play` needs `option.stream_urls`, a non-empty list
of URLs (Simple outbound call with media file play); `amd` (not on the seed) takes `option.machine_handle`
hangup|continue. Nothing in a creation request bounds the ring or the call: where the seed is silent the
account's readings (config.Account.voipbin_*)
say how an unanswered call ends and how its end is reported, and how the webhooks are named and signed."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from simulator import signing
from simulator.callbacks import Callback
from simulator.config import Account
from simulator.ledger import CallRecord
from simulator.providers.base import (
    E164,
    ApiError,
    CreateRequest,
    Provider,
    is_http_url,
    json_response,
    new_id,
)

NOT_YET = "9999-01-01 00:00:00.000000"
ZERO_ID = "00000000-0000-0000-0000-000000000000"
# outcome -> (hangup_by, hangup_reason); no_answer and cancelled depend on the account's readings (_hangup)
HANGUP: dict[str, tuple[str, str]] = {
    "answered": ("remote", "normal"), "machine": ("local", "amd"), "busy": ("remote", "busy"),
    "failed": ("remote", "failed"),
}
STATUS = {"queued": "dialing", "ringing": "ringing", "answered": "progressing", "completed": "hangup"}
DIAL_TIMEOUT_S = 60  # "dialout" reading: VoIPbin's own limit on an unanswered outgoing call
CALLEE_GIVES_UP_S = 30  # "callee" reading: the far end stops ringing on its own
MAX_CALL_S = 3600  # VoIPbin's own limit on an answered call (hangup_reason "timeout")
MACHINE_HANDLES = ("hangup", "continue")
EVENT_NAMES = {  # voipbin_events reading -> (ringing, progressing, hangup)
    "status": ("call_ringing", "call_progressing", "call_hangup"),
    "updated": ("call_updated", "call_updated", "call_updated"),
    "hungup": ("call_ringing", "call_progressing", "call_hungup"),
}


def ts(epoch: float | None) -> str:
    if epoch is None:
        return NOT_YET
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1e6):06d}"


def check_action(action: dict[str, Any], where: str) -> None:
    """400 for a talk, play or amd action whose option is not shaped as VoIPbin's pages show it."""
    kind, option = action["type"], action.get("option")
    if kind not in ("talk", "play", "amd"):
        return
    if not isinstance(option, dict):
        raise ApiError(400, f"{where}: a {kind} action needs an option object")
    if kind == "talk" and not (isinstance(option.get("text"), str) and option["text"].strip()):
        raise ApiError(400, f"{where}: talk option.text must be a non-empty string")
    if kind == "play":
        urls = option.get("stream_urls")
        if not isinstance(urls, list) or not urls or not all(is_http_url(u) for u in urls):
            raise ApiError(400, f"{where}: play option.stream_urls must be a non-empty list of http(s) URLs")
    if kind == "amd":
        if option.get("machine_handle") not in MACHINE_HANDLES:
            handles = ", ".join(MACHINE_HANDLES)
            raise ApiError(400, f"{where}: amd option.machine_handle must be one of {handles}")
        if "async" in option and not isinstance(option["async"], bool):
            raise ApiError(400, f"{where}: amd option.async must be a boolean")


def ring_params(account: Account) -> dict[str, Any]:
    """How long an unanswered call rings, by the account's reading: no limit of VoIPbin's own (the network's,
    simulator.carrier), its 60 s dial timeout, or the callee's side giving up."""
    if account.voipbin_ring_limit == "dialout":
        return {"ring_timeout": DIAL_TIMEOUT_S}
    if account.voipbin_ring_limit == "callee":
        return {"ring_timeout": CALLEE_GIVES_UP_S}
    return {}


class VoipbinProvider(Provider):
    name = "voipbin"
    created_status = 200
    auth_failed = "Unauthorized"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1.0/calls", self.handle_create),
            web.post("/v1.0/groupcalls", self.handle_create),
            web.get("/v1.0/calls/{call_id}", self.handle_get),
            web.post("/v1.0/calls/{call_id}/hangup", self.handle_voipbin_hangup),
        ]

    async def handle_voipbin_hangup(self, request: web.Request) -> web.Response:
        """POST /v1.0/calls/{id}/hangup: hangs the call up and answers its call object (200)."""
        try:
            account = await self.authenticate(request)
            call = self.lookup(request.match_info["call_id"], account)
        except ApiError as exc:
            return self.error(exc.status, exc.message)
        self.carrier.hang_up(call)
        return json_response(self.call_object(call, account))

    def error(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        return json_response({"message": message}, status)

    async def authenticate(self, request: web.Request) -> Account:
        token = request.query.get("token") or request.cookies.get("token") or ""
        token = token or request.headers.get("Authorization", "").removeprefix("Bearer ")
        for account in self.accounts.values():
            if account.provider == self.name and token and account.auth_token == token:
                return account
        raise ApiError(401, self.auth_failed)

    @staticmethod
    def _address(raw: Any, what: str) -> dict[str, str]:
        if not isinstance(raw, dict) or not raw.get("type") or not isinstance(raw.get("target"), str):
            raise ApiError(400, f"{what} must be an address object {{type, target}}")
        if raw["type"] == "tel" and not E164.match(raw["target"]):
            raise ApiError(400, f"{what}.target must be an E.164 number with a leading +: {raw['target']!r}")
        if not raw["target"]:
            raise ApiError(400, f"{what}.target must not be empty")
        return {"type": raw["type"], "target": raw["target"], "target_name": "", "name": "", "detail": ""}

    async def parse_create(self, request: web.Request, account: Account) -> CreateRequest:
        body = await self.read_json(request)
        source = self._address(body.get("source"), "source")
        raw_destinations = body.get("destinations")
        if not isinstance(raw_destinations, list) or not raw_destinations:
            raise ApiError(400, "destinations must be a non-empty list")
        destinations = [self._address(d, f"destinations[{i}]") for i, d in enumerate(raw_destinations)]
        actions, flow_id = body.get("actions"), body.get("flow_id")
        if flow_id is None and not isinstance(actions, list):
            raise ApiError(400, "either actions or flow_id is required")
        if flow_id is not None and account.flow_ids is not None and flow_id not in account.flow_ids:
            raise ApiError(404, "Not found: flow_id")
        if actions is not None and not all(isinstance(a, dict) and isinstance(a.get("type"), str)
                                           for a in actions):
            raise ApiError(400, "every action must be an object with a type")
        for i, action in enumerate(actions or []):
            check_action(action, f"actions[{i}]")
        amd = [a for a in actions or [] if a["type"] == "amd"]
        group = request.path.endswith("/groupcalls")
        params: dict[str, Any] = {**ring_params(account), "time_limit": MAX_CALL_S,
                                  "machine_detection": bool(amd),
                                  "machine_hangup": any(a["option"]["machine_handle"] == "hangup"
                                                        for a in amd),
                                  "source": source, "flow_id": flow_id or new_id(),
                                  "addresses": {d["target"]: d for d in destinations}}
        if actions is not None and (not actions or actions[0].get("type") != "answer"):
            # The seed's Troubleshooting section: with no answer action first, the call immediately hangs up.
            params["forced_outcome"] = "failed"
        return CreateRequest(destinations=list(dict.fromkeys(d["target"] for d in destinations)),
                             caller=source["target"], params=params, batch=new_id() if group else None,
                             extra={"group": group, "source": source, "destinations": destinations})

    @staticmethod
    def _hangup(call: CallRecord, account: Account) -> tuple[str, str]:
        """(hangup_by, hangup_reason) of an ended call, by its outcome and the account's readings."""
        outcome = call.outcome or "failed"
        if outcome == "cancelled":  # ended through POST /v1.0/calls/{id}/hangup before an answer
            return "local", account.voipbin_cancel_reason
        if outcome == "no_answer":
            if account.voipbin_ring_limit == "dialout":
                return "local", "dialout"
            return "remote", account.voipbin_unanswered_reason
        if outcome == "machine" and not call.params.get("machine_hangup"):
            outcome = "answered"  # amd "continue": the call goes on, and no call field tells a machine
        if outcome == "answered" and call.hung_up_by_api:
            return "local", "normal"
        if outcome == "answered" and call.duration >= MAX_CALL_S:
            return "local", "timeout"
        return HANGUP[outcome]

    def call_object(self, call: CallRecord, account: Account) -> dict[str, Any]:
        params = call.params
        hangup_by, reason = self._hangup(call, account) if call.status == "completed" else ("", "")
        updated = call.hangup_at or call.answered_at or call.ringing_at
        return {
            "id": call.call_uuid, "customer_id": account.auth_id, "flow_id": params["flow_id"],
            "confbridge_id": ZERO_ID, "type": "flow", "master_call_id": ZERO_ID, "chained_call_ids": [],
            "recording_id": ZERO_ID, "recording_ids": [], "source": params["source"],
            "destination": params["addresses"][call.destination],
            "status": STATUS[call.status], "direction": "outgoing", "hangup_by": hangup_by,
            "hangup_reason": reason, "tm_create": ts(call.received_at), "tm_update": ts(updated),
            "tm_progressing": ts(call.answered_at), "tm_ringing": ts(call.ringing_at),
            "tm_hangup": ts(call.hangup_at),
        }

    def created(self, calls: list[CallRecord], req: CreateRequest, account: Account) -> web.Response:
        if not req.extra["group"]:
            return json_response([self.call_object(c, account) for c in calls], self.created_status)
        return json_response({
            "id": req.batch, "customer_id": account.auth_id, "source": req.extra["source"],
            "destinations": req.extra["destinations"], "ring_method": "ringall",
            "answer_method": "hangupothers",
            "answer_call_id": ZERO_ID, "call_ids": [c.call_uuid for c in calls],
            "tm_create": ts(calls[0].received_at), "tm_update": NOT_YET, "tm_delete": NOT_YET,
        }, self.created_status)

    async def handle_get(self, request: web.Request) -> web.Response:
        try:
            account = await self.authenticate(request)
            call = self.lookup(request.match_info["call_id"], account)
        except ApiError as exc:
            return self.error(exc.status, exc.message)
        return json_response(self.call_object(call, account))

    def _webhook(self, event: str, call: CallRecord, account: Account, *,
                 final: bool = False) -> list[Callback]:
        if not account.webhook_uri:
            return []
        body = orjson.dumps({"type": event, "data": self.call_object(call, account)})
        headers = {"Content-Type": "application/json"}
        if account.webhook_secret:
            signature = signing.voipbin_signature(account.webhook_secret, body)
            if account.voipbin_signature == "bare":
                signature = signature.removeprefix("sha256=")
            headers["X-VoIPBIN-Signature"] = signature
        return [Callback(kind=event, url=account.webhook_uri, body=body, headers=headers, final=final,
                         retry_4xx=False)]

    def ring_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        return self._webhook(EVENT_NAMES[account.voipbin_events][0], call, account)

    def answer_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        return self._webhook(EVENT_NAMES[account.voipbin_events][1], call, account)

    def hangup_callbacks(self, call: CallRecord, account: Account) -> list[Callback]:
        return self._webhook(EVENT_NAMES[account.voipbin_events][2], call, account, final=True)
