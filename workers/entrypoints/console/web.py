"""What every console page shares: the router's route class (sign-in redirect, 403, 404 and 503 as pages),
the templates, the signed-in user and its scope, and the database call."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import psycopg
from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from psycopg_pool import PoolTimeout

from campaigns.accounts import AccountSummary, list_accounts
from campaigns.errors import NotFound
from workers.entrypoints.console.session import (
    FLASH_COOKIE,
    ConsoleUser,
    Forbidden,
    SignInRequired,
    read_flash,
    require_user,
    set_flash,
)

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
FRAGMENT_HEADER = "x-console-fragment"  # set by console.js on its refreshes: a 401 there, not a redirect


class ConsoleRoute(APIRoute):
    """A console route: no session -> the sign-in page (or 401 for a refresh), and refusals as pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                if request.headers.get(FRAGMENT_HEADER):
                    return Response("signed out", status_code=401)
                return RedirectResponse(f"/ui/login?next={quote(request.url.path)}", status_code=303)
            except Forbidden as exc:
                return message_page(request, "Not allowed", str(exc), 403)
            except NotFound as exc:
                return message_page(request, "Not found", str(exc), 404)
            except (psycopg.OperationalError, PoolTimeout):
                return message_page(request, "Unavailable", "Postgres is not reachable; try again shortly",
                                    503)

        return handle


UserDep = Annotated[ConsoleUser, Depends(require_user)]


def page(request: Request, name: str, user: ConsoleUser | None, status_code: int = 200,
         **context: Any) -> HTMLResponse:
    """A page or fragment; a whole page also shows (and so ends) the flash an action's redirect left it."""
    cookie = request.cookies.get(FLASH_COOKIE)
    whole_page = cookie is not None and not request.headers.get(FRAGMENT_HEADER)
    flash = read_flash(cookie, user) if whole_page and user is not None else None
    if flash is not None:
        context.setdefault(flash[0], flash[1])
    response = templates.TemplateResponse(request, name, {"user": user, **context}, status_code=status_code)
    if whole_page:
        response.delete_cookie(FLASH_COOKIE, path=request.url.path)
    return response


def redirect_with_flash(user: ConsoleUser, target: str, kind: str, text: str) -> RedirectResponse:
    """303 to `target`, which tells `text` once (as "done" or "error"); the URL carries none of it."""
    response = RedirectResponse(target, status_code=303)
    set_flash(response, user, urlsplit(target).path, kind, text)
    return response


def message_page(request: Request, title: str, message: str, status_code: int) -> HTMLResponse:
    user = getattr(request.state, "console_user", None)
    return page(request, "message.html", user, status_code, title=title, message=message)


def reached_accounts(conn: psycopg.Connection, user: ConsoleUser) -> list[AccountSummary]:
    """The accounts the signed-in key reaches (ApiKeyIdentity.reaches, the API's own rule), in id order."""
    return [account for account in list_accounts(conn) if user.reaches(account.id)]


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only, never another site."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/campaigns"
