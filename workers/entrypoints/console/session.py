"""The console's sign-in: an API key buys a signed session cookie, and every form carries a CSRF token.

The cookie holds the key's id, name, role and accounts, an expiry and a random nonce, signed with
HMAC-SHA256 under the console's own derived key (campaigns.keys.Purpose.CONSOLE_SESSION; a previous
secret's signature is still accepted). It is HttpOnly, SameSite=Strict, and Secure outside development.
Each request checks the signature, the expiry, and that the key is still not revoked, so revoking a key
(`dialer apikey revoke`) signs its sessions out at their next click. The CSRF token is an HMAC of the
session's nonce: bound to the session, checked on every POST.
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

from campaigns.api_keys import ApiKeyIdentity, Role
from campaigns.config import get_settings
from campaigns.keys import Purpose, all_keys, current_key

COOKIE = "dialer_console"
LIFETIME_S = 8 * 3600
# Revoked, or given another role since signing in: the session ends (sign in again).
STILL_VALID = "SELECT 1 FROM api_key WHERE id = %s AND revoked_at IS NULL AND role = %s"


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
    return base64.urlsafe_b64encode(hmac.new(key, data, hashlib.sha256).digest()).decode().rstrip("=")


def new_session(holder: ApiKeyIdentity) -> ConsoleUser:
    """A session for a verified key, with its role and accounts (None: an admin key, every account)."""
    accounts = None if holder.role is Role.ADMIN else sorted(holder.account_ids)
    return ConsoleUser(holder.id, holder.name, holder.role.value, accounts, int(time.time()) + LIFETIME_S,
                       secrets.token_urlsafe(16))


def encode(user: ConsoleUser) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(asdict(user), separators=(",", ":")).encode()).decode()
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
        user = ConsoleUser(**json.loads(base64.urlsafe_b64decode(payload.encode())))
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


async def session_user(request: Request) -> ConsoleUser | None:
    """The signed-in user, or None; the key behind the session must still be unrevoked."""
    user = decode(request.cookies.get(COOKIE))
    if user is None:
        return None
    async with request.app.state.pool.connection(timeout=5) as conn:
        cur = await conn.execute(STILL_VALID, (user.key_id, user.role))
        if await cur.fetchone() is None:
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
