"""The ASGI application uvicorn serves (`dialer api`).

Carrier callbacks are the hot path (thousands a second), so /callbacks/ requests go straight to their
route, outside FastAPI's middleware stack, which costs about a quarter of a callback's time. Everything else,
the lifespan included, goes through the FastAPI app, whose state (pools, writer) the callback route uses.
A /callbacks/ path no route takes (a non-numeric account, a segment too many) is a 404, and a method no
route takes a 405: a carrier's typo is its own error, never our 500. Both paths go through the one
RequestGuard (here for callbacks, in the app's middleware for the rest): a callback's body has a deadline.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Router
from starlette.types import Receive, Scope, Send

from workers.callbacks.receiver import router as callbacks_router
from workers.entrypoints.api.app import create_app
from workers.entrypoints.api.request_guard import RequestGuard


class CallbacksFirst:
    def __init__(self, api: object) -> None:
        self.api = api
        self.callbacks = RequestGuard(Router(routes=list(callbacks_router.routes)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/callbacks/"):
            scope["app"] = self.api  # request.app.state: the pools and writer the lifespan made
            try:
                await self.callbacks(scope, receive, send)
            except HTTPException as exc:  # raised by the router before any answer: no route, or no method
                await Response(status_code=exc.status_code, headers=exc.headers)(scope, receive, send)
        else:
            await self.api(scope, receive, send)  # type: ignore[operator]


app = CallbacksFirst(create_app())
