"""Operators' API keys: create (the key is shown once), list, revoke, verify; each with a scope.

A key's scope is its role and its provider accounts (issue 20): `admin` reaches everything, provider
accounts and keys included; `operator` runs the campaigns, runs, schedules, DNC lists and caps of its
accounts; `viewer` reads them. The HTTP API answers an object of an account outside the scope as if it did
not exist (workers/entrypoints/api/scopes.py). Keys made before scopes are admin: they could do everything.

Only a keyed hash of a key is stored (campaigns.secrets_box.hash_api_key, HMAC-SHA256 under
DIALER_SECRET_KEY), so a database dump does not hand out working keys. Changing DIALER_SECRET_KEY
invalidates every key. Sync functions take a psycopg connection and do not commit, like campaigns.accounts;
verify_api_key_async serves the HTTP API from its async pool.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import dict_row

from campaigns.accounts import resolve_account_id
from campaigns.errors import InvalidRequest, NotFound
from campaigns.keys import api_key_hashes
from campaigns.secrets_box import hash_api_key

KEY_PREFIX = "dlr_"  # recognisable in logs and secret scanners
MAX_NAME_LENGTH = 100
# Any accepted hash: the current key's, or a previous secret's (rotation) or the pre-HKDF form.
IDENTITY_SQL = ("SELECT k.id, k.name, k.role, "
                "ARRAY(SELECT account_id FROM api_key_account WHERE api_key_id = k.id) FROM api_key k ")
VERIFY_SQL = IDENTITY_SQL + "WHERE key_hash = ANY(%s) AND revoked_at IS NULL LIMIT 1"
# A key already verified (a console session's): its scope now, if it is still not revoked.
SCOPE_BY_ID_SQL = IDENTITY_SQL + "WHERE k.id = %s AND revoked_at IS NULL"


class Role(StrEnum):
    """What a key may do, each role everything the one before it may."""

    VIEWER = "viewer"  # read its accounts' campaigns, results, rejects, runs and DNC lists
    OPERATOR = "operator"  # also change them: campaigns, runs, schedules, DNC lists, caps, account tests
    ADMIN = "admin"  # every account, and provider accounts, API keys and the global DNC list


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class NewApiKey:
    """A key just created: the only time `key` exists outside the caller's hands."""

    id: int
    name: str
    key: str


@dataclass(frozen=True)
class ApiKeySummary:
    """What may be shown of a stored key: never the key, nor its hash."""

    id: int
    name: str
    role: Role
    accounts: tuple[str, ...]  # account names; none for an admin key
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class ApiKeyIdentity:
    """The holder of a verified key, and its scope."""

    id: int
    name: str
    role: Role
    account_ids: frozenset[int]  # empty for an admin key, which reaches every account

    def reaches(self, account_id: int | None) -> bool:
        """Whether this key sees what belongs to the account (None: no account, which only admins see)."""
        return self.role is Role.ADMIN or (account_id is not None and account_id in self.account_ids)

    def at_least(self, role: Role) -> bool:
        """Whether this key's role includes `role`."""
        return _RANK[self.role] >= _RANK[role]


def parse_role(value: str) -> Role:
    """A role from its name, or InvalidRequest naming the choices."""
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise InvalidRequest(f"unknown role {value!r}: choose admin, operator or viewer") from None


def generate_key() -> str:
    """A new random key: the prefix and 256 bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_api_key(conn: psycopg.Connection, *, name: str, role: Role | str,
                   accounts: Iterable[str | int] = ()) -> NewApiKey:
    """Store a new key's hash under `name` with its scope and return the key (the caller shows it once).

    An operator or viewer key names one or more accounts (by name or id); an admin key names none.
    """
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"an API key name must be 1 to {MAX_NAME_LENGTH} characters")
    role = parse_role(role)
    account_ids = sorted({resolve_account_id(conn, account) for account in accounts})
    if role is Role.ADMIN and account_ids:
        raise InvalidRequest("an admin key reaches every account: accounts are for operator and viewer keys")
    if role is not Role.ADMIN and not account_ids:
        raise InvalidRequest(f"{role} keys need at least one account (--account NAME)")
    key = generate_key()
    row = conn.execute("INSERT INTO api_key (name, key_hash, role) VALUES (%s, %s, %s) RETURNING id",
                       (name, hash_api_key(key), role.value)).fetchone()
    assert row is not None
    key_id = int(row[0])
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO api_key_account (api_key_id, account_id) VALUES (%s, %s)",
                        [(key_id, account_id) for account_id in account_ids])
    return NewApiKey(id=key_id, name=name, key=key)


def list_api_keys(conn: psycopg.Connection, *, include_revoked: bool = True) -> list[ApiKeySummary]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT k.id, k.name, k.role, ARRAY(SELECT a.name FROM api_key_account ka "
            "JOIN provider_account a ON a.id = ka.account_id WHERE ka.api_key_id = k.id ORDER BY a.name) "
            "AS accounts, k.created_at, k.revoked_at FROM api_key k "
            "WHERE %s OR k.revoked_at IS NULL ORDER BY k.id", (include_revoked,)).fetchall()
    return [ApiKeySummary(**{**row, "role": Role(row["role"]), "accounts": tuple(row["accounts"])})
            for row in rows]


def revoke_api_key(conn: psycopg.Connection, key_id: int) -> datetime:
    """Revoke a key from now on; revoking it again keeps the first time. Returns when it was revoked."""
    row = conn.execute("UPDATE api_key SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s "
                       "RETURNING revoked_at", (key_id,)).fetchone()
    if row is None:
        raise NotFound(f"no API key {key_id} (see `dialer apikey list`)")
    revoked_at: datetime = row[0]
    return revoked_at


def _identity(row: tuple[Any, ...] | None) -> ApiKeyIdentity | None:
    if row is None:
        return None
    return ApiKeyIdentity(id=int(row[0]), name=row[1], role=Role(row[2]),
                          account_ids=frozenset(int(account_id) for account_id in row[3]))


def verify_api_key(conn: psycopg.Connection, key: str) -> ApiKeyIdentity | None:
    """The holder of `key`, with its scope, if it exists and is not revoked, else None."""
    return _identity(conn.execute(VERIFY_SQL, (api_key_hashes(key),)).fetchone())


async def verify_api_key_async(conn: psycopg.AsyncConnection, key: str) -> ApiKeyIdentity | None:
    """verify_api_key on an async connection (the API's pool)."""
    cur = await conn.execute(VERIFY_SQL, (api_key_hashes(key),))
    return _identity(await cur.fetchone())


def key_scope_by_id(conn: psycopg.Connection, key_id: int) -> ApiKeyIdentity | None:
    """Key `key_id`'s scope as it stands now (role and accounts), or None if it is revoked or gone."""
    return _identity(conn.execute(SCOPE_BY_ID_SQL, (key_id,)).fetchone())


async def key_scope_by_id_async(conn: psycopg.AsyncConnection, key_id: int) -> ApiKeyIdentity | None:
    """key_scope_by_id on an async connection (the API's pool, which the console's sessions use)."""
    cur = await conn.execute(SCOPE_BY_ID_SQL, (key_id,))
    return _identity(await cur.fetchone())
