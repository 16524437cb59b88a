"""VoIPbin's call list, `GET /v1.0/calls?token=…` (VoIPbin's Call tutorial, Get call list): the customer's
calls, newest first, as `{"result": [call objects], "next_page_token": tm_create of the last one}`. A wrong
or missing token is a 401, as on every VoIPbin route; the dialer's `account test` relies on that.

Paging (`page_size`, `page_token`) is VoIPbin's wider API, not the seed's: the seed shows only the answer's
`next_page_token`, so both are optional here and the default page is the newest 100 calls."""

from __future__ import annotations

from aiohttp import web

from simulator.providers.base import ApiError, json_response
from simulator.providers.voipbin import VoipbinProvider, ts

MAX_PAGE = 100


def call_list_routes(provider: VoipbinProvider) -> list[web.RouteDef]:
    """The call list route, served with `provider`'s authentication and call objects."""

    async def handle_list(request: web.Request) -> web.Response:
        try:
            account = await provider.authenticate(request)
            size = int(request.query.get("page_size", MAX_PAGE))
            if not 1 <= size <= MAX_PAGE:
                raise ValueError
        except ApiError as exc:
            return provider.error(exc.status, exc.message)
        except ValueError:
            return provider.error(400, f"page_size must be an integer from 1 to {MAX_PAGE}")
        before = request.query.get("page_token")
        calls = {id(c): c for c in provider.carrier.calls.values() if c.account == account.auth_id
                 and c.provider == provider.name}
        newest = sorted(calls.values(), key=lambda c: c.received_at, reverse=True)
        if before:
            newest = [c for c in newest if ts(c.received_at) < before]
        page = newest[:size]
        token = ts(page[-1].received_at) if len(newest) > size else ""
        return json_response({"result": [provider.call_object(c, account) for c in page],
                              "next_page_token": token})

    return [web.get("/v1.0/calls", handle_list)]
