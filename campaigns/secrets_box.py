"""Provider tokens encrypted at rest with Fernet under a key derived from DIALER_SECRET_KEY (MultiFernet: the
previous secrets' keys still decrypt); never printed or logged."""

from __future__ import annotations

from cryptography.fernet import InvalidToken, MultiFernet

from campaigns.keys import api_key_hashes, token_fernet


class SecretUnreadable(Exception):
    """A stored token cannot be decrypted: DIALER_SECRET_KEY changed since it was stored."""


def _fernet() -> MultiFernet:
    # The token-encryption key derived from DIALER_SECRET_KEY, then the ones still accepted (campaigns.keys).
    return token_fernet()


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "a stored provider token cannot be decrypted: was DIALER_SECRET_KEY changed? (put the old one "
            "in DIALER_PREVIOUS_SECRET_KEYS, then run `dialer secrets rotate`)"
        ) from exc


def rotate(token: str) -> str:
    """A stored token re-encrypted under the current key (SecretUnreadable if no accepted key opens it)."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("a stored provider token cannot be decrypted with the current or a previous "
                               "DIALER_SECRET_KEY") from exc


def hash_api_key(key: str) -> str:
    """API keys are stored as a keyed hash (its own derived key); the key itself is shown once."""
    return api_key_hashes(key)[0]
