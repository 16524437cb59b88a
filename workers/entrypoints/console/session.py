"""The console's sign-in: an API key buys a signed session cookie, and every form carries a CSRF token.

The cookie holds the key's id, name, role and accounts, an expiry and a random nonce, signed with
HMAC-SHA256 under the console's own derived key (campaigns.keys.Purpose.CONSOLE_SESSION; a previous
secret's signature is still accepted). It is HttpOnly, SameSite=Strict, and Secure outside development.
Each request checks the signature, the expiry, and that the key still has the scope signed in
(campaigns.api_keys.key_scope_by_id: not revoked, same role, same accounts), so revoking a key
(`dialer apikey revoke`) or changing its scope signs its sessions out at their next click. The CSRF token
is an HMAC of the session's nonce: bound to the session, checked on every POST.

What an action did ("resumed") is told once: the action's redirect sets a flash cookie for the page it
goes to (signed and bound to the session like the CSRF token, a minute long), and that page shows it and
deletes it, so a reload or a bookmarked URL does not tell it again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass

from fastapi import Request, Response

from campaigns.api_keys import ApiKeyIdentity, Role, key_scope_by_id_async
from campaigns.config import get_settings
from campaigns.keys import Purpose, all_keys, current_key

COOKIE = "dialer_console"
LIFETIME_S = 8 * 3600
FLASH_COOKIE = "dialer_console_flash"
FLASH_KINDS = ("done", "error")  # a page shows "done" as news and "error" as a refusal
FLASH_LIFETIME_S = 60
FLASH_MAX_CHARS = 500


class SignInRequired(Exception):
    """No valid session: pages redirect to the sign-in form, fragments answer 401."""


class Forbidden(Exception):
    """The session's role may not do this (403)."""


@dataclass(frozen=True)
class ConsoleUser:
    """Who holds the session: the API key's id, name and role, the accounts it is limited to (None: all)."""

    key_id: int
    name: str
    role: str
    accounts: list[int] | None
    expires: int
    nonce: str

    @property
    def identity(self) -> ApiKeyIdentity:
        """The key's scope as the API holds it, so the console asks the API's own questions of it."""
        return ApiKeyIdentity(self.key_id, self.name, Role(self.role), frozenset(self.accounts or ()))

    def may(self, role: str) -> bool:
        return self.identity.at_least(Role(role))

    def reaches(self, account_id: int | None) -> bool:
        """Whether the key sees what belongs to the account (an admin key every account)."""
        return self.identity.reaches(account_id)

    @property
    def csrf(self) -> str:
        return _mac(current_key(Purpose.CONSOLE_SESSION), b"csrf:" + self.nonce.encode())


def _mac(key: bytes, data: bytes) -> str:
    return _b64(hmac.new(key, data, hashlib.sha256).digest())


def new_session(holder: ApiKeyIdentity) -> ConsoleUser:
    """A session for a verified key, with its role and accounts (None: an admin key, every account)."""
    accounts = None if holder.role is Role.ADMIN else sorted(holder.account_ids)
    return ConsoleUser(holder.id, holder.name, holder.role.value, accounts, int(time.time()) + LIFETIME_S,
                       secrets.token_urlsafe(16))


def _b64(data: bytes) -> str:
    """URL-safe base64 without its '=' padding, which a cookie value would have to quote."""
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(user: ConsoleUser) -> str:
    payload = _b64(json.dumps(asdict(user), separators=(",", ":")).encode())
    return f"{payload}.{_mac(current_key(Purpose.CONSOLE_SESSION), payload.encode())}"


def decode(cookie: str | None, now: float | None = None) -> ConsoleUser | None:
    """The session in a cookie, or None if it is missing, forged, malformed or expired."""
    if not cookie or cookie.count(".") != 1:
        return None
    payload, signature = cookie.split(".")
    if not any(hmac.compare_digest(_mac(key, payload.encode()), signature)
               for key in all_keys(Purpose.CONSOLE_SESSION)):
        return None
    try:
        user = ConsoleUser(**json.loads(_unb64(payload)))
    except (ValueError, TypeError):
        return None
    if user.role not in set(Role) or user.expires < (now if now is not None else time.time()):
        return None
    return user


def set_cookie(response: Response, user: ConsoleUser) -> None:
    response.set_cookie(COOKIE, encode(user), max_age=LIFETIME_S, path="/ui", httponly=True,
                        samesite="strict", secure=get_settings().environment != "development")


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/ui")


def same_scope(user: ConsoleUser, now: ApiKeyIdentity | None) -> bool:
    """Whether the key behind a session still has the scope signed into it: not revoked, the same role and
    the same accounts. A key revoked, or given another role or other accounts since, ends the session."""
    return (now is not None and now.role.value == user.role
            and (now.role is Role.ADMIN or sorted(now.account_ids) == (user.accounts or [])))


def set_flash(response: Response, user: ConsoleUser, path: str, kind: str, text: str) -> None:
    """Tell the next load of the page at `path` (only) what an action did, once."""
    payload = _b64(json.dumps([kind, text[:FLASH_MAX_CHARS]]).encode())
    response.set_cookie(FLASH_COOKIE, f"{payload}.{_flash_mac(user, payload)}", max_age=FLASH_LIFETIME_S,
                        path=path, httponly=True, samesite="strict",
                        secure=get_settings().environment != "development")


def read_flash(cookie: str | None, user: ConsoleUser) -> tuple[str, str] | None:
    """(kind, text) of this session's flash cookie, or None if there is none or it is not this session's."""
    if not cookie or cookie.count(".") != 1:
        return None
    payload, signature = cookie.split(".")
    if not hmac.compare_digest(_flash_mac(user, payload), signature):
        return None
    try:
        kind, text = json.loads(_unb64(payload))
    except (ValueError, TypeError):
        return None
    return (kind, text) if kind in FLASH_KINDS and isinstance(text, str) else None


def _flash_mac(user: ConsoleUser, payload: str) -> str:
    return _mac(current_key(Purpose.CONSOLE_SESSION), f"flash:{user.nonce}:{payload}".encode())


async def session_user(request: Request) -> ConsoleUser | None:
    """The signed-in user, or None; the key behind the session must still have the session's scope."""
    user = decode(request.cookies.get(COOKIE))
    if user is None:
        return None
    async with request.app.state.pool.connection(timeout=5) as conn:
        if not same_scope(user, await key_scope_by_id_async(conn, user.key_id)):
            return None
    return user


async def require_user(request: Request) -> ConsoleUser:
    user = await session_user(request)
    if user is None:
        raise SignInRequired()
    request.state.console_user = user
    return user


def check_csrf(user: ConsoleUser, token: object) -> None:
    """A POST's form token must be this session's (403 otherwise)."""
    if not isinstance(token, str) or not hmac.compare_digest(token, user.csrf):
        raise Forbidden("the form's CSRF token is missing or not this session's; reload the page")


def require_role(user: ConsoleUser, role: str) -> None:
    if not user.may(role):
        raise Forbidden(f"this key is a {user.role}; it takes an {role} key")
