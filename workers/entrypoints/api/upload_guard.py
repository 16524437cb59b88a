"""The CSV upload's guard, in front of FastAPI's form parsing: FastAPI reads (and spools to disk) a
multipart body before any dependency runs, so the API key and the size cap are checked here, on the raw
ASGI stream. No key, no body read: 401. A declared size over DIALER_MAX_UPLOAD_BYTES: 413 before a byte is
read; a streamed one: 413 as soon as it passes the cap (the rest is never read).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from campaigns.api_keys import verify_api_key_async
from campaigns.config import get_settings
from workers.entrypoints.api.deps import ApiError, error_response

UPLOAD_PATH = "/campaigns"


def _is_upload(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["method"] != "POST":  # lifespan and websocket scopes have no path
        return False
    return str(scope["path"]).rstrip("/") == UPLOAD_PATH


def _bearer(headers: dict[bytes, bytes]) -> str | None:
    value = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, key = value.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


class UploadGuard:
    """ASGI middleware: authenticate and cap POST /campaigns before its body is parsed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_upload(scope):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        refusal = await self._refusal(scope, headers)
        if refusal is not None:
            await error_response(refusal)(scope, receive, send)
            return
        await self._capped(scope, receive, send, get_settings().max_upload_bytes)

    async def _refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> ApiError | None:
        key = _bearer(headers)
        challenge = {"WWW-Authenticate": "Bearer"}
        if key is None:
            return ApiError(401, "unauthorized", "missing API key: send Authorization: Bearer <key>",
                            headers=challenge)
        try:
            async with scope["app"].state.pool.connection(timeout=5) as conn:
                holder = await verify_api_key_async(conn, key)
        except Exception:
            return ApiError(503, "service_unavailable", "Postgres is not reachable; try again shortly")
        if holder is None:
            return ApiError(401, "unauthorized", "unknown or revoked API key", headers=challenge)
        declared = headers.get(b"content-length")
        limit = get_settings().max_upload_bytes
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return _too_large(limit)
        return None

    async def _capped(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True  # the app sees the client leave; the rest of the body is never read
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # the app's answer to a "disconnect" is replaced by the 413 below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await error_response(_too_large(limit))(scope, receive, send)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large",
                    f"the upload is over the {limit:,}-byte limit (DIALER_MAX_UPLOAD_BYTES)")

