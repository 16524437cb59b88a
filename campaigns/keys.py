"""One key per purpose, derived from DIALER_SECRET_KEY with HKDF-SHA256, and the keys of earlier secrets.

A leak of one derived key (say, a Bandwidth callback password read off a carrier's console) says nothing
about another (the key that encrypts provider tokens). Rotation: set the new DIALER_SECRET_KEY and move the
old one into DIALER_PREVIOUS_SECRET_KEYS (comma-separated); everything derived from a previous secret is
still accepted (callback URL secrets, tokens) until `dialer secrets rotate` has re-encrypted the tokens and
the in-flight calls' callbacks have arrived.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from campaigns.config import get_settings

SALT = b"dialer-key-derivation-v1"


class Purpose(StrEnum):
    TOKEN_ENCRYPTION = "token-encryption"
    CALLBACK_URL = "callback-url"
    BANDWIDTH_CALLBACK = "bandwidth-callback-password"
    API_KEY_HASH = "api-key-hash"


@lru_cache(maxsize=64)
def derive(secret: str, purpose: Purpose) -> bytes:
    """32 bytes for `purpose`, from one operator secret (cached: HKDF on every callback is waste)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=purpose.value.encode()).derive(
        secret.encode())


def secrets_newest_first() -> list[str]:
    """DIALER_SECRET_KEY, then each of DIALER_PREVIOUS_SECRET_KEYS."""
    settings = get_settings()
    return [settings.secret_key, *settings.previous_secrets]


def current_key(purpose: Purpose) -> bytes:
    return derive(get_settings().secret_key, purpose)


def all_keys(purpose: Purpose) -> list[bytes]:
    """The current key first, then the previous secrets' keys (still accepted, never issued)."""
    return [derive(secret, purpose) for secret in secrets_newest_first()]
