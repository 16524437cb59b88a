"""One key per purpose, and rotation: values made under a previous DIALER_SECRET_KEY (or by the release
before per-purpose keys) keep working while that key is listed in DIALER_PREVIOUS_SECRET_KEYS, and
`dialer secrets rotate` re-encrypts every stored token under the current key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet

from campaigns.accounts import add_account, load_account
from campaigns.api_keys import create_api_key, verify_api_key
from campaigns.db import init_database
from campaigns.keys import Purpose, derive
from campaigns.secret_rotation import rotate_stored_secrets
from tests.conftest import ADMIN_URL, TEST_DB
from tests.engine_harness import REPO
from tests.private_services import dialer_env
from workers.callbacks import tickets
from workers.providers.signatures import (
    bandwidth_callback_credentials,
    callback_url_secret,
    url_secret_matches,
)

PRIVATE_DB = f"{TEST_DB}_rotation"
OLD = "old-secret-" + "o" * 40
NEW = "new-secret-" + "n" * 40


def secret_keys(current: str, previous: str = "") -> AbstractContextManager[None]:
    return dialer_env({"DIALER_SECRET_KEY": current, "DIALER_PREVIOUS_SECRET_KEYS": previous})


@pytest.fixture(scope="module")
def private_db() -> Iterator[str]:
    """A database of its own: rotation rewrites every account, and the session's others are not ours."""
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{PRIVATE_DB}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PRIVATE_DB}"')
    init_database(url)
    yield url
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PRIVATE_DB}" WITH (FORCE)')


def test_each_purpose_has_its_own_key() -> None:
    keys = {derive(OLD, purpose) for purpose in Purpose}
    assert len(keys) == len(Purpose) and OLD.encode() not in keys
    with secret_keys(OLD):
        assert callback_url_secret(5) != bandwidth_callback_credentials(5)[1]


def test_a_rotated_key_keeps_old_tokens_readable_until_rotate_rewrites_them(private_db: str) -> None:
    with secret_keys(OLD), psycopg.connect(private_db) as conn:
        account_id = add_account(conn, name=f"rot-{uuid.uuid4().hex[:6]}", provider="voipbin", auth_id="a",
                                 auth_token="token-under-old", cps=1, max_concurrent=1,
                                 webhook_secret="hook-under-old")
        conn.commit()
    with secret_keys(NEW, previous=OLD), psycopg.connect(private_db) as conn:
        creds, _ = load_account(conn, account_id)
        assert (creds.auth_token, creds.webhook_secret) == ("token-under-old", "hook-under-old")
        report = rotate_stored_secrets(conn)
        conn.commit()
        assert report.values >= 2
    with secret_keys(NEW), psycopg.connect(private_db) as conn:  # the old key dropped
        creds, _ = load_account(conn, account_id)
        assert (creds.auth_token, creds.webhook_secret) == ("token-under-old", "hook-under-old")


def test_tokens_stored_before_per_purpose_keys_are_read_and_migrated(private_db: str) -> None:
    """The release before HKDF encrypted with Fernet(SHA-256(secret)): such rows keep working."""
    with secret_keys(NEW), psycopg.connect(private_db) as conn:
        account_id = add_account(conn, name=f"legacy-{uuid.uuid4().hex[:6]}", provider="plivo", auth_id="a",
                                 auth_token="placeholder", cps=1, max_concurrent=1)
        legacy = Fernet(base64.urlsafe_b64encode(hashlib.sha256(NEW.encode()).digest()))
        conn.execute("UPDATE provider_account SET auth_token_encrypted = %s WHERE id = %s",
                     (legacy.encrypt(b"legacy-token").decode(), account_id))
        conn.commit()
        assert load_account(conn, account_id)[0].auth_token == "legacy-token"
        rotate_stored_secrets(conn)
        conn.commit()
        stored = conn.execute("SELECT auth_token_encrypted FROM provider_account WHERE id = %s",
                              (account_id,)).fetchone()[0]
        current = Fernet(base64.urlsafe_b64encode(derive(NEW, Purpose.TOKEN_ENCRYPTION)))
        assert current.decrypt(stored.encode()) == b"legacy-token"


def test_callback_secrets_and_tickets_of_the_previous_key_are_accepted_only_while_it_is_listed() -> None:
    with secret_keys(OLD):
        old_secret = callback_url_secret(9)
        old_ticket = tickets.issue("tryvox", 9, "hangup", None, 4_000_000_000)
    with secret_keys(NEW, previous=OLD):
        assert url_secret_matches(9, old_secret)
        assert tickets.read("tryvox", 9, "hangup", old_ticket, 1.0) is not None
    with secret_keys(NEW):
        assert not url_secret_matches(9, old_secret)
        assert tickets.read("tryvox", 9, "hangup", old_ticket, 1.0) is None


def test_api_keys_survive_rotation_and_the_pre_hkdf_hash(private_db: str) -> None:
    with secret_keys(OLD), psycopg.connect(private_db) as conn:
        new = create_api_key(conn, name=f"rot-{uuid.uuid4().hex[:6]}", role="admin")
        conn.commit()
    with secret_keys(NEW, previous=OLD), psycopg.connect(private_db) as conn:
        assert verify_api_key(conn, new.key) is not None
        plain = "dk_" + secrets.token_urlsafe(24)
        legacy_hash = hmac.new(NEW.encode(), plain.encode(), hashlib.sha256).hexdigest()
        conn.execute("INSERT INTO api_key (name, key_hash, role) VALUES ('legacy', %s, 'admin')",
                     (legacy_hash,))
        conn.commit()
        assert verify_api_key(conn, plain) is not None
    with secret_keys(NEW), psycopg.connect(private_db) as conn:
        assert verify_api_key(conn, new.key) is None  # its secret is gone: reissue keys before dropping it


def test_dialer_secrets_rotate_reports_in_one_line(private_db: str) -> None:
    env = {**os.environ, "DIALER_DATABASE_URL": private_db, "DIALER_SECRET_KEY": NEW,
           "DIALER_PREVIOUS_SECRET_KEYS": OLD}
    out = subprocess.run([str(Path(sys.executable).parent / "dialer"), "secrets", "rotate"], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "re-encrypted" in out.stdout and "under the current key" in out.stdout
