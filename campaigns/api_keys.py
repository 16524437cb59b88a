"""Operators' API keys: create (the key is shown once), list, revoke, verify.

Only a keyed hash of a key is stored (campaigns.secrets_box.hash_api_key, HMAC-SHA256 under
DIALER_SECRET_KEY), so a database dump does not hand out working keys. Changing DIALER_SECRET_KEY
invalidates every key. Sync functions take a psycopg connection and do not commit, like campaigns.accounts;
verify_api_key_async serves the HTTP API from its async pool.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from campaigns.errors import InvalidRequest, NotFound
from campaigns.keys import api_key_hashes
from campaigns.secrets_box import hash_api_key

KEY_PREFIX = "dlr_"  # recognisable in logs and secret scanners
MAX_NAME_LENGTH = 100
# Any accepted hash: the current key's, or a previous secret's (rotation) or the pre-HKDF form.
VERIFY_SQL = "SELECT id, name FROM api_key WHERE key_hash = ANY(%s) AND revoked_at IS NULL LIMIT 1"


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
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class ApiKeyIdentity:
    """The holder of a verified key."""

    id: int
    name: str


def generate_key() -> str:
    """A new random key: the prefix and 256 bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_api_key(conn: psycopg.Connection, *, name: str) -> NewApiKey:
    """Store a new key's hash under `name` and return the key (the caller shows it once)."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"an API key name must be 1 to {MAX_NAME_LENGTH} characters")
    key = generate_key()
    row = conn.execute("INSERT INTO api_key (name, key_hash) VALUES (%s, %s) RETURNING id",
                       (name, hash_api_key(key))).fetchone()
    assert row is not None
    return NewApiKey(id=int(row[0]), name=name, key=key)


def list_api_keys(conn: psycopg.Connection, *, include_revoked: bool = True) -> list[ApiKeySummary]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT id, name, created_at, revoked_at FROM api_key "
                           "WHERE %s OR revoked_at IS NULL ORDER BY id", (include_revoked,)).fetchall()
    return [ApiKeySummary(**row) for row in rows]


def revoke_api_key(conn: psycopg.Connection, key_id: int) -> datetime:
    """Revoke a key from now on; revoking it again keeps the first time. Returns when it was revoked."""
    row = conn.execute("UPDATE api_key SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s "
                       "RETURNING revoked_at", (key_id,)).fetchone()
    if row is None:
        raise NotFound(f"no API key {key_id} (see `dialer apikey list`)")
    revoked_at: datetime = row[0]
    return revoked_at


def verify_api_key(conn: psycopg.Connection, key: str) -> ApiKeyIdentity | None:
    """The holder of `key` if it exists and is not revoked, else None."""
    row = conn.execute(VERIFY_SQL, (api_key_hashes(key),)).fetchone()
    return ApiKeyIdentity(id=int(row[0]), name=row[1]) if row else None


async def verify_api_key_async(conn: psycopg.AsyncConnection, key: str) -> ApiKeyIdentity | None:
    """verify_api_key on an async connection (the API's pool)."""
    cur = await conn.execute(VERIFY_SQL, (api_key_hashes(key),))
    row = await cur.fetchone()
    return ApiKeyIdentity(id=int(row[0]), name=row[1]) if row else None
