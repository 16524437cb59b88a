"""One key per purpose, derived from DIALER_SECRET_KEY with HKDF-SHA256, and the keys of earlier secrets.

A leak of one derived key (say, a Bandwidth callback password read off a carrier's console) says nothing
about another (the key that encrypts provider tokens). Rotation: set the new DIALER_SECRET_KEY and move the
old one into DIALER_PREVIOUS_SECRET_KEYS (comma-separated); everything derived from a previous secret is
still accepted (callback URL secrets, tokens) until `dialer secrets rotate` has re-encrypted the tokens and
the in-flight calls' callbacks have arrived.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from enum import StrEnum
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from campaigns.config import get_settings

SALT = b"dialer-key-derivation-v1"


class Purpose(StrEnum):
    TOKEN_ENCRYPTION = "token-encryption"
    CALLBACK_URL = "callback-url"
    BANDWIDTH_CALLBACK = "bandwidth-callback-password"
    API_KEY_HASH = "api-key-hash"
    CONSOLE_SESSION = "console-session"  # signs the operator console's session cookie (/ui)


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


def _legacy_fernet_key(secret: str) -> bytes:
    """How tokens were encrypted before per-purpose keys: SHA-256 of the whole secret."""
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


@lru_cache(maxsize=8)
def _token_fernet(secrets: tuple[str, ...]) -> MultiFernet:
    derived = [Fernet(base64.urlsafe_b64encode(derive(s, Purpose.TOKEN_ENCRYPTION))) for s in secrets]
    legacy = [Fernet(_legacy_fernet_key(s)) for s in secrets]
    return MultiFernet(derived + legacy)


def token_fernet() -> MultiFernet:
    """Encrypts with the current token key; decrypts with it, every previous secret's, and the pre-HKDF
    form (so tokens stored by an older release keep working until `dialer secrets rotate` rewrites them)."""
    return _token_fernet(tuple(secrets_newest_first()))


def api_key_hashes(key: str) -> list[str]:
    """The stored form of an API key: the current hash first (what is written), then the ones still
    accepted (previous secrets, and the pre-HKDF HMAC under the whole secret)."""
    secrets = secrets_newest_first()
    found = [hmac.new(derive(s, Purpose.API_KEY_HASH), key.encode(), hashlib.sha256).hexdigest()
             for s in secrets]
    return found + [hmac.new(s.encode(), key.encode(), hashlib.sha256).hexdigest() for s in secrets]
