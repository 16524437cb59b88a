"""Outbound webhook endpoints: one per account or per campaign, a campaign's replacing its account's for
that campaign. Each has its own Standard Webhooks secret (`whsec_` and 24 random bytes in base64), made when
its URL is set, shown once, and stored encrypted under DIALER_SECRET_KEY (campaigns.secrets_box). The events
go in the outbox by the schema's triggers; workers.housekeeping.webhook_delivery sends them."""

from __future__ import annotations

import base64
import ipaddress
import secrets
from urllib.parse import urlsplit

import psycopg

from campaigns.errors import InvalidRequest
from campaigns.provider_options import PLAIN_HTTP_HINT
from campaigns.secrets_box import encrypt

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
MAX_URL_CHARS = 2000
LOCAL_NAMES = ("localhost", "localhost.localdomain")
ONLY_IN_DEVELOPMENT = "(loopback and private targets only with DIALER_ENVIRONMENT=development)"


def new_secret() -> str:
    """A Standard Webhooks signing secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def private_address(address: str) -> bool:
    """Loopback, private, link-local (cloud metadata), unspecified, reserved, multicast: no receiver's."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def notify_url_refusal(url: str, *, development: bool) -> str | None:
    """Why webhooks must not go to `url` (None: they may). https outside development; and outside it no host
    that names this machine or a private network by itself (SSRF): localhost, or a literal private address.
    A name that resolves to one is refused at send time (workers.housekeeping.webhook_delivery)."""
    if len(url) > MAX_URL_CHARS:
        return f"at most {MAX_URL_CHARS} characters"
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"an http(s) URL with a host, not {url[:80]!r}"
    if parts.username or parts.password:
        return "a URL without credentials in it (the signature authenticates each event)"
    if development:
        return None
    if parts.scheme != "https":
        return f"an https URL, not {url[:80]!r} {PLAIN_HTTP_HINT}"
    host = parts.hostname.rstrip(".").lower()
    if host in LOCAL_NAMES or host.endswith(".localhost"):
        return f"a public host, not {host!r} {ONLY_IN_DEVELOPMENT}"
    try:
        literal = private_address(host)
    except ValueError:
        return None  # a name, checked when it is resolved
    if literal:
        return f"a public address, not {host} {ONLY_IN_DEVELOPMENT}"
    return None


def set_notify_url(
    conn: psycopg.Connection, *, url: str | None, development: bool,
    account_id: int | None = None, campaign_id: int | None = None,
) -> str | None:
    """Point the account's or the campaign's events at `url` with a new secret, returned to be shown once
    (setting a URL again rotates its secret; its undelivered events go to the new URL, signed with the new
    secret). An empty `url` removes the endpoint and its deliveries, and returns None."""
    if (account_id is None) == (campaign_id is None):
        raise ValueError("an endpoint belongs to an account or to a campaign")
    owner, owner_id = ("account_id", account_id) if account_id is not None else ("campaign_id", campaign_id)
    if not url:
        conn.execute(f"DELETE FROM webhook_endpoint WHERE {owner} = %s", (owner_id,))
        return None
    refusal = notify_url_refusal(url, development=development)
    if refusal is not None:
        raise InvalidRequest(f"notify_url: must be {refusal}")
    secret = new_secret()
    conn.execute(
        f"""INSERT INTO webhook_endpoint ({owner}, url, secret_encrypted) VALUES (%s, %s, %s)
            ON CONFLICT ({owner}) DO UPDATE
            SET url = EXCLUDED.url, secret_encrypted = EXCLUDED.secret_encrypted""",
        (owner_id, url, encrypt(secret)),
    )
    return secret


def notify_url(
    conn: psycopg.Connection, *, account_id: int | None = None, campaign_id: int | None = None
) -> str | None:
    """The endpoint's URL (never its secret), or None."""
    owner, owner_id = ("account_id", account_id) if account_id is not None else ("campaign_id", campaign_id)
    row = conn.execute(f"SELECT url FROM webhook_endpoint WHERE {owner} = %s", (owner_id,)).fetchone()
    return str(row[0]) if row else None
