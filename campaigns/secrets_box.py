"""Provider tokens encrypted at rest with Fernet under DIALER_SECRET_KEY; never printed or logged."""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken

from campaigns.config import get_settings


class SecretUnreadable(Exception):
    """A stored token cannot be decrypted: DIALER_SECRET_KEY changed since it was stored."""


def _fernet(secret_key: str | None = None) -> Fernet:
    # Fernet needs 32 url-safe base64 bytes; derive them from the operator's secret of any length.
    key = hashlib.sha256((secret_key or get_settings().secret_key).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "a stored provider token cannot be decrypted: was DIALER_SECRET_KEY changed?"
        ) from exc


def hash_api_key(key: str) -> str:
    """API keys are stored as a keyed hash; the key itself is shown once."""
    return hmac.new(get_settings().secret_key.encode(), key.encode(), hashlib.sha256).hexdigest()
