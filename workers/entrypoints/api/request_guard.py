"""The one ASGI layer in front of every route: nothing is read before it is authorised, and every body has a
cap and a deadline (the rules, per route, in request_rules).

FastAPI reads a body (and spools a multipart one to disk) before any dependency runs, so the API key is
verified here, on the raw request, before a byte of the body is read; the verified identity is left in
`scope["state"]["api_key"]` (`request.state.api_key`) for the routes. Then:

    no API key                         401 unauthorized (+ WWW-Authenticate: Bearer), body unread
    unknown or revoked API key         401 unauthorized, body unread
    Postgres cannot say                503 service_unavailable, body unread
    declared Content-Length over cap   413 too_large, body unread
    streamed bytes pass the cap        413 too_large as soon as they do; the rest is never read
    body not all there by the deadline 408 request_timeout

A refusal closes the connection (`Connection: close`), so the server reads none of the rest of the body;
the handler is told the client left (`http.disconnect`) and never sees a partial body, and whatever it
answers is replaced by the refusal.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from campaigns.api_keys import verify_api_key_async
from campaigns.config import get_settings
from workers.entrypoints.api.deps import ApiError, error_response
from workers.entrypoints.api.request_rules import BodyRule, declared_over, read_deadline, rule_for
from workers.entrypoints.api.scopes import require_role
from workers.metrics.scrape_auth import bearer_credential

CHALLENGE = {"WWW-Authenticate": "Bearer"}


class RequestGuard:
    """ASGI middleware: authenticate, then cap and time the body, before any handler reads it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan and websocket scopes carry no body
            await self.app(scope, receive, send)
            return
        rule = rule_for(scope["method"], scope["path"], get_settings())
        headers = Headers(scope=scope)
        refusal = await self._authorisation_refusal(scope, headers, rule) if rule.needs_api_key else None
        if refusal is None and declared_over(headers.get("content-length"), rule.cap):
            refusal = too_large(rule)
        if refusal is not None:
            await refuse(refusal, scope, receive, send)
            return
        await BodyWatch(rule).run(self.app, scope, receive, send)

    async def _authorisation_refusal(self, scope: Scope, headers: Headers, rule: BodyRule) -> ApiError | None:
        key = bearer_credential(headers.get("authorization"))
        if key is None:
            return ApiError(401, "unauthorized", "missing API key: send Authorization: Bearer <key>",
                            headers=CHALLENGE)
        try:
            async with scope["app"].state.pool.connection(timeout=5) as conn:
                holder = await verify_api_key_async(conn, key)
        except Exception:
            return ApiError(503, "service_unavailable", "Postgres is not reachable; try again shortly")
        if holder is None:
            return ApiError(401, "unauthorized", "unknown or revoked API key", headers=CHALLENGE)
        scope.setdefault("state", {})["api_key"] = holder
        if rule.min_role is not None:
            try:
                require_role(holder, rule.min_role)
            except ApiError as too_low:
                return too_low
        return None


class BodyWatch:
    """One request's body as its handler reads it: counted against the cap and timed against the deadline
    until it is complete; past either, the handler hears a disconnect and the client the refusal."""

    def __init__(self, rule: BodyRule) -> None:
        self.rule = rule
        self.timeout_s = get_settings().body_read_timeout_s
        self.received = 0
        self.first_read_at: float | None = None
        self.complete = False
        self.refusal: ApiError | None = None
        self.started = False

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        async def watched_receive() -> Message:
            if self.refusal is not None:
                return {"type": "http.disconnect"}
            if self.complete:  # past the body: a streaming answer listening for the client's leaving
                return await receive()
            return await self._read(receive)

        async def watched_send(message: Message) -> None:
            if self.refusal is not None:
                return  # the handler's answer to the disconnect is replaced by the refusal
            self.started = self.started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app(scope, watched_receive, watched_send)
        except Exception:
            if self.refusal is None:
                raise
        if self.refusal is not None and not self.started:
            await refuse(self.refusal, scope, receive, send)

    async def _read(self, receive: Receive) -> Message:
        loop = asyncio.get_running_loop()
        if self.first_read_at is None:
            self.first_read_at = loop.time()
        try:
            async with asyncio.timeout_at(read_deadline(self.first_read_at, self.received, self.rule,
                                                        self.timeout_s)):
                message = await receive()
        except TimeoutError:
            self.refusal = ApiError(408, "request_timeout", f"the request body did not arrive within "
                                    f"{self.timeout_s:g} s (DIALER_BODY_READ_TIMEOUT_S)")
            return {"type": "http.disconnect"}
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        self.complete = not message.get("more_body", False)
        if self.rule.cap is not None and self.received > self.rule.cap:
            self.refusal = too_large(self.rule)
            return {"type": "http.disconnect"}
        return message


def too_large(rule: BodyRule) -> ApiError:
    return ApiError(413, "too_large",
                    f"the request body is over the {rule.cap or 0:,}-byte limit ({rule.cap_setting})")


async def refuse(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    """The error, closing the connection: the rest of the body is never read."""
    error.headers = {**(error.headers or {}), "Connection": "close"}
    await error_response(error)(scope, receive, send)
