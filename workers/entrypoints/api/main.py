"""The ASGI application uvicorn serves (`dialer api`).

Carrier callbacks are the hot path (thousands a second), so /callbacks/ requests go straight to their
route, outside FastAPI's middleware stack, which costs about a quarter of a callback's time. Everything else,
the lifespan included, goes through the FastAPI app, whose state (pools, writer) the callback route uses.
"""

from __future__ import annotations

from starlette.routing import Router
from starlette.types import Receive, Scope, Send

from workers.callbacks.receiver import router as callbacks_router
from workers.entrypoints.api.app import create_app


class CallbacksFirst:
    def __init__(self, api: object) -> None:
        self.api = api
        self.callbacks = Router(routes=list(callbacks_router.routes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/callbacks/"):
            scope["app"] = self.api  # request.app.state: the pools and writer the lifespan made
            await self.callbacks(scope, receive, send)
        else:
            await self.api(scope, receive, send)  # type: ignore[operator]


app = CallbacksFirst(create_app())
