"""Re-encrypting every stored provider token and webhook secret under the current key, after a change of
DIALER_SECRET_KEY (the old one in DIALER_PREVIOUS_SECRET_KEYS) or an upgrade from the pre-HKDF encryption.

All rows or none: one transaction, and a token no accepted key opens stops it naming the account.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from campaigns.errors import InvalidRequest
from campaigns.secrets_box import SecretUnreadable, rotate


@dataclass(frozen=True)
class RotationReport:
    accounts: int
    values: int  # tokens and webhook secrets rewritten


def rotate_stored_secrets(conn: psycopg.Connection) -> RotationReport:
    """Rewrite every account's encrypted values under the current key; commit once."""
    rows = conn.execute("SELECT id, name, auth_token_encrypted, webhook_secret_encrypted "
                        "FROM provider_account ORDER BY id FOR UPDATE").fetchall()
    values = 0
    with conn.transaction():
        for account_id, name, token, webhook in rows:
            try:
                new_token = rotate(token)
                new_webhook = rotate(webhook) if webhook else None
            except SecretUnreadable as exc:
                raise InvalidRequest(f"account {account_id} ({name}): {exc}; nothing was rewritten"
                                     ) from None
            conn.execute("UPDATE provider_account SET auth_token_encrypted = %s, "
                         "webhook_secret_encrypted = %s WHERE id = %s", (new_token, new_webhook, account_id))
            values += 1 + (1 if webhook else 0)
    return RotationReport(accounts=len(rows), values=values)
