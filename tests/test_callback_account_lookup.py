"""When the receiver cannot look up a callback's account it never answers 2xx (the carrier retries, nothing
is lost), and it says why: a store outage is a 503, a token we cannot decrypt is a logged error with a
clear answer, not a silent retry loop. In-process API against the real Postgres and Redis."""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from campaigns.accounts import add_account
from campaigns.config import get_settings
from tests.results_helpers import event_count, signed_url, tryvox_hangup
from workers.entrypoints.api.app import create_app

pytestmark = pytest.mark.timeout(60)


def _tryvox_account(conn: psycopg.Connection) -> int:
    return add_account(conn, name=f"lookup-{secrets.token_hex(4)}", provider="tryvox", auth_id="AUTHlookup",
                       auth_token="tvx_sk_lookup", cps=5, max_concurrent=5, base_url="http://127.0.0.1:9")


def _post_hangup(client: TestClient, account_id: int) -> tuple[int, str, str]:
    call = str(uuid.uuid4())
    url = signed_url("http://testserver", "tryvox", account_id, "hangup")
    response = client.post(url, content=tryvox_hangup(call, "+12125550123"),
                           headers={"Content-Type": "application/json"})
    return response.status_code, response.text, call


@pytest.fixture()
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(apply_events=False)) as test_client:
        yield test_client


def test_an_undecryptable_account_token_is_logged_and_answered_clearly(
    client: TestClient, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        account_id = _tryvox_account(conn)
        conn.execute("UPDATE provider_account SET auth_token_encrypted = 'gAAAAAnot-a-fernet-token' "
                     "WHERE id = %s", (account_id,))
    with caplog.at_level(logging.ERROR, logger="workers.callbacks.receiver"):
        status, text, call = _post_hangup(client, account_id)
    assert status == 500
    assert "credentials unreadable" in text
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "DIALER_SECRET_KEY" in errors[0].getMessage()
    with psycopg.connect(database_url) as conn:
        assert event_count(conn, account_id) == 0


def test_a_store_outage_during_the_account_lookup_answers_503_and_logs_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        account_id = _tryvox_account(conn)
    # This app's own pool points at a port where no Postgres listens; the shared one is untouched.
    monkeypatch.setenv("DIALER_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:9/nowhere")
    get_settings.cache_clear()
    try:
        with TestClient(create_app(apply_events=False)) as outage_client:
            with caplog.at_level(logging.WARNING, logger="workers.callbacks.receiver"):
                status, text, _ = _post_hangup(outage_client, account_id)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert status == 503 and "store unavailable" in text
    assert any("store unavailable" in r.getMessage() for r in caplog.records)
