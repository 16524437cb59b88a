"""Provider accounts: add, list, update, remove; and their decrypted credentials for the adapters.

Which provider kinds exist, and each one's default API base URL, is declared by the provider adapters
(workers.providers.registry registers them here on import), so this domain module never imports the engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from campaigns.errors import InvalidRequest, NotFound
from campaigns.secrets_box import decrypt, encrypt
from campaigns.store.retired import detach_account

# provider kind -> default API base URL, in registration order; filled by register_provider.
_PROVIDER_BASE_URLS: dict[str, str] = {}
# provider kind -> its check of an account's options (ValueError naming the problem; `partial` for updates)
OptionsCheck = Callable[..., None]
_OPTIONS_CHECKS: dict[str, OptionsCheck] = {}
_NO_ANSWER_URL: set[str] = set()  # kinds that cannot hand a call to a campaign's own answer URL


def register_provider(
    kind: str,
    default_base_url: str,
    *,
    check_options: OptionsCheck | None = None,
    takes_answer_url: bool = True,
) -> None:
    """Declare a provider kind that accounts may use (called by the adapters' registry), with what its
    accounts must carry and whether its campaigns may have their own answer URL."""
    _PROVIDER_BASE_URLS[kind] = default_base_url
    if check_options is not None:
        _OPTIONS_CHECKS[kind] = check_options
    if not takes_answer_url:
        _NO_ANSWER_URL.add(kind)


def provider_takes_answer_url(kind: str) -> bool:
    """Whether a campaign on this provider may hand its calls to its own answer URL."""
    return kind not in _NO_ANSWER_URL


def _check_options(provider: str, options: Mapping[str, Any], *, partial: bool = False) -> None:
    check = _OPTIONS_CHECKS.get(provider)
    if check is None:
        return
    try:
        check(options, partial=partial)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc


@dataclass(frozen=True)
class AccountCredentials:
    """A provider account as an adapter needs it (token already decrypted)."""

    account_id: int
    provider: str
    auth_id: str
    auth_token: str = field(repr=False)  # never in a log line, a traceback's locals or a task argument
    base_url: str
    options: Mapping[str, Any] = field(default_factory=dict)  # e.g. Bandwidth application_id
    webhook_secret: str | None = field(default=None, repr=False)  # VoIPbin webhook HMAC secret

    @property
    def time_zone(self) -> str | None:
        """options['time_zone']: the console zone of callback times where the provider writes local time."""
        zone = self.options.get("time_zone")
        return str(zone) if zone else None


@dataclass(frozen=True)
class AccountSummary:
    """What may be shown of an account: never its token."""

    id: int
    name: str
    provider: str
    auth_id: str
    base_url: str
    cps: float
    max_concurrent: int
    options: dict[str, Any]


def _check_provider(provider: str) -> None:
    if not _PROVIDER_BASE_URLS:  # a programming error, not bad input: say how to fix it
        raise RuntimeError("no provider adapters are registered: import workers.providers.registry first")
    if provider not in _PROVIDER_BASE_URLS:
        raise InvalidRequest(f"provider must be one of {', '.join(_PROVIDER_BASE_URLS)}, not {provider!r}")


def _check_cps(cps: float) -> None:
    if cps <= 0:
        raise InvalidRequest(f"cps must be above 0, not {cps}")


def _check_max_concurrent(max_concurrent: int) -> None:
    if max_concurrent <= 0:
        raise InvalidRequest(f"max-concurrent must be above 0, not {max_concurrent}")


def add_account(
    conn: psycopg.Connection,
    *,
    name: str,
    provider: str,
    auth_id: str,
    auth_token: str,
    cps: float,
    max_concurrent: int,
    base_url: str | None = None,
    webhook_secret: str | None = None,
    options: dict[str, Any] | None = None,
) -> int:
    """Store a provider account with its token encrypted; returns its id."""
    _check_provider(provider)
    _check_cps(cps)
    _check_max_concurrent(max_concurrent)
    _check_options(provider, options or {})
    try:
        row = conn.execute(
            """INSERT INTO provider_account (name, provider, auth_id, auth_token_encrypted,
                   webhook_secret_encrypted, base_url, cps, max_concurrent, options)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (
                name,
                provider,
                auth_id,
                encrypt(auth_token),
                encrypt(webhook_secret) if webhook_secret else None,
                (base_url or _PROVIDER_BASE_URLS[provider]).rstrip("/"),
                cps,
                max_concurrent,
                Jsonb(options or {}),
            ),
        ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise InvalidRequest(f"an account named {name!r} already exists") from exc
    assert row is not None
    return int(row[0])


def list_accounts(conn: psycopg.Connection) -> list[AccountSummary]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("""SELECT id, name, provider, auth_id, base_url, cps, max_concurrent, options
                              FROM provider_account ORDER BY id""").fetchall()
    return [AccountSummary(**row) for row in rows]


def no_such_account(name_or_id: str | int) -> NotFound:
    """The error for an account that does not exist (or, to an API key, is not in its scope)."""
    return NotFound(f"no provider account {str(name_or_id)!r} (see `dialer account list`)")


def resolve_account_id(conn: psycopg.Connection, name_or_id: str | int) -> int:
    """An account id from its id or its name."""
    text = str(name_or_id)
    row = conn.execute(
        "SELECT id FROM provider_account WHERE name = %s OR id::text = %s ORDER BY (name = %s) DESC",
        (text, text, text),
    ).fetchone()
    if row is None:
        raise no_such_account(text)
    return int(row[0])


def update_account(
    conn: psycopg.Connection,
    name_or_id: str | int,
    *,
    cps: float | None = None,
    max_concurrent: int | None = None,
    base_url: str | None = None,
    auth_token: str | None = None,
    options: dict[str, Any] | None = None,
    webhook_secret: str | None = None,
) -> None:
    """Change what is given; `webhook_secret` "" removes the account's secret (VoIPbin then authenticates
    its webhooks by the URL secret again)."""
    account_id = resolve_account_id(conn, name_or_id)
    sets: list[str] = []
    values: list[Any] = []
    if cps is not None:
        _check_cps(cps)
        sets.append("cps = %s")
        values.append(cps)
    if max_concurrent is not None:
        _check_max_concurrent(max_concurrent)
        sets.append("max_concurrent = %s")
        values.append(max_concurrent)
    if base_url is not None:
        sets.append("base_url = %s")
        values.append(base_url.rstrip("/"))
    if auth_token is not None:
        sets.append("auth_token_encrypted = %s")
        values.append(encrypt(auth_token))
    if webhook_secret is not None:
        sets.append("webhook_secret_encrypted = %s")
        values.append(encrypt(webhook_secret) if webhook_secret else None)
    if options is not None:
        row = conn.execute("SELECT provider FROM provider_account WHERE id = %s", (account_id,)).fetchone()
        _check_options(str(row[0]) if row else "", options, partial=True)
        sets.append("options = options || %s")
        values.append(Jsonb(options))
    if sets:
        conn.execute(f"UPDATE provider_account SET {', '.join(sets)} WHERE id = %s", (*values, account_id))
    _CACHE.pop(account_id, None)


def remove_account(conn: psycopg.Connection, name_or_id: str | int) -> None:
    """Remove an account no campaign uses but archived ones; those keep its name and their results."""
    account_id = resolve_account_id(conn, name_or_id)
    in_use = conn.execute("SELECT count(*) FROM campaign WHERE account_id = %s AND archived_at IS NULL",
                          (account_id,)).fetchone()
    if in_use and in_use[0]:
        raise InvalidRequest(f"account {name_or_id} is used by {in_use[0]} campaign(s); archive or delete "
                             "those first (`dialer campaign archive ID`, `dialer campaign delete ID`)")
    # A fallback of a campaign that may still dial is refused by name; an archived one never dials again
    # and simply loses it.
    backing = [r[0] for r in conn.execute(
        "SELECT f.campaign_id FROM campaign_fallback_account f JOIN campaign c ON c.id = f.campaign_id "
        "WHERE f.account_id = %s AND c.archived_at IS NULL ORDER BY 1", (account_id,)).fetchall()]
    if backing:
        listed = ", ".join(str(c) for c in backing)
        raise InvalidRequest(f"account {name_or_id} is a fallback account of campaign(s) {listed}; drop it "
                             "from them first (`dialer campaign set ID --fallback-account …` without it, or "
                             "--no-fallbacks), or archive them")
    conn.execute("DELETE FROM campaign_fallback_account WHERE account_id = %s", (account_id,))
    conn.execute("UPDATE campaign SET account_id = NULL WHERE account_id = %s", (account_id,))
    detach_account(conn, account_id)
    conn.execute("DELETE FROM provider_account WHERE id = %s", (account_id,))


def read_account(conn: psycopg.Connection, name_or_id: str | int) -> tuple[str, AccountCredentials]:
    """An account's name and decrypted credentials, read now rather than from the cache: for showing and
    checking an account just added or changed."""
    account_id = resolve_account_id(conn, name_or_id)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM provider_account WHERE id = %s", (account_id,)).fetchone()
    if row is None:
        raise NotFound(f"no provider account {name_or_id!r} (see `dialer account list`)")
    return str(row["name"]), account_from_row(row)[0]


@dataclass(frozen=True)
class AccountLimits:
    cps: float
    max_concurrent: int


_CACHE: dict[int, tuple[float, AccountCredentials, AccountLimits]] = {}
CACHE_TTL_S = 10.0  # edits reach running workers within this


def load_account(conn: psycopg.Connection, account_id: int) -> tuple[AccountCredentials, AccountLimits]:
    """The account's decrypted credentials and limits, cached briefly per process."""
    cached = _CACHE.get(account_id)
    if cached and time.monotonic() - cached[0] < CACHE_TTL_S:
        return cached[1], cached[2]
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM provider_account WHERE id = %s", (account_id,)).fetchone()
    if row is None:
        raise NotFound(f"no provider account {account_id}")
    creds, limits = account_from_row(row)
    _CACHE[account_id] = (time.monotonic(), creds, limits)
    return creds, limits


def account_from_row(row: dict[str, Any]) -> tuple[AccountCredentials, AccountLimits]:
    """Credentials (token decrypted) and limits from a provider_account row."""
    creds = AccountCredentials(
        account_id=row["id"],
        provider=row["provider"],
        auth_id=row["auth_id"],
        auth_token=decrypt(row["auth_token_encrypted"]),
        base_url=row["base_url"],
        options=row["options"],
        webhook_secret=decrypt(row["webhook_secret_encrypted"]) if row["webhook_secret_encrypted"] else None,
    )
    return creds, AccountLimits(cps=float(row["cps"]), max_concurrent=int(row["max_concurrent"]))
