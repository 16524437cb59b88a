"""API keys against the real Postgres: shown once, stored as a keyed hash, revocable; and their CLI."""

from __future__ import annotations

import secrets

import psycopg
import pytest
from typer.testing import CliRunner

from campaigns.api_keys import (
    KEY_PREFIX,
    create_api_key,
    list_api_keys,
    revoke_api_key,
    verify_api_key,
)
from campaigns.errors import InvalidRequest, NotFound
from campaigns.secrets_box import hash_api_key
from workers.entrypoints.cli import app

runner = CliRunner()


def unique_name() -> str:
    return f"key-{secrets.token_hex(4)}"


def test_a_created_key_verifies_as_its_holder(db: psycopg.Connection) -> None:
    new = create_api_key(db, name=unique_name(), role="admin")
    assert new.key.startswith(KEY_PREFIX) and len(new.key) > 40
    holder = verify_api_key(db, new.key)
    assert holder is not None and (holder.id, holder.name) == (new.id, new.name)


def test_unknown_and_altered_keys_do_not_verify(db: psycopg.Connection) -> None:
    new = create_api_key(db, name=unique_name(), role="admin")
    assert verify_api_key(db, new.key[:-1] + ("A" if new.key[-1] != "A" else "B")) is None
    assert verify_api_key(db, "") is None
    assert verify_api_key(db, KEY_PREFIX + "not-a-key") is None


def test_only_the_keyed_hash_is_stored_never_the_key(db: psycopg.Connection) -> None:
    new = create_api_key(db, name=unique_name(), role="admin")
    row = db.execute("SELECT * FROM api_key WHERE id = %s", (new.id,)).fetchone()
    assert row is not None
    assert new.key not in [str(value) for value in row]
    stored = db.execute("SELECT key_hash FROM api_key WHERE id = %s", (new.id,)).fetchone()
    assert stored == (hash_api_key(new.key),)


def test_two_keys_are_never_the_same(db: psycopg.Connection) -> None:
    name = unique_name()
    assert create_api_key(db, name=name, role="admin").key != create_api_key(db, name=name, role="admin").key


def test_a_revoked_key_no_longer_verifies_and_revoking_again_keeps_the_first_time(
        db: psycopg.Connection) -> None:
    new = create_api_key(db, name=unique_name(), role="admin")
    first = revoke_api_key(db, new.id)
    assert verify_api_key(db, new.key) is None
    assert revoke_api_key(db, new.id) == first
    listed = {k.id: k for k in list_api_keys(db)}
    assert listed[new.id].revoked_at == first
    assert new.id not in {k.id for k in list_api_keys(db, include_revoked=False)}


def test_revoking_an_unknown_key_names_it(db: psycopg.Connection) -> None:
    with pytest.raises(NotFound, match="no API key 987654321"):
        revoke_api_key(db, 987654321)


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_a_key_needs_a_name(db: psycopg.Connection, name: str) -> None:
    with pytest.raises(InvalidRequest, match="name"):
        create_api_key(db, name=name, role="admin")


def test_cli_create_prints_the_key_once_and_list_never_shows_it(db: psycopg.Connection) -> None:
    name = unique_name()
    created = runner.invoke(app, ["apikey", "create", name, "--role", "admin"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith(KEY_PREFIX) and "\n" not in key  # the key alone on stdout, for $(…)
    assert "cannot be shown again" in created.stderr
    holder = verify_api_key(db, key)
    assert holder is not None and holder.name == name

    listed = runner.invoke(app, ["apikey", "list"])
    assert listed.exit_code == 0, listed.output
    assert name in listed.stdout and str(holder.id) in listed.stdout
    assert key not in listed.output and hash_api_key(key) not in listed.output


def test_cli_revoke_makes_the_key_fail_verification(db: psycopg.Connection) -> None:
    new = create_api_key(db, name=unique_name(), role="admin")
    revoked = runner.invoke(app, ["apikey", "revoke", str(new.id)])
    assert revoked.exit_code == 0, revoked.output
    assert f"API key {new.id} revoked" in revoked.stdout
    assert verify_api_key(db, new.key) is None


def test_cli_revoke_of_an_unknown_id_fails_with_the_reason(database_url: str) -> None:
    result = runner.invoke(app, ["apikey", "revoke", "987654321"])
    assert result.exit_code != 0
    assert isinstance(result.exception, NotFound)
