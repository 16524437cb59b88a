"""The URLs a carrier fetches for a call must be https (issue 20, "audio_url must be https", and the answer
and fallback URLs, which decide where the call goes): over plain http anyone on that path chooses what the
called people hear, or whom they are connected to. Outside development a plain-http URL is refused when set,
by the CLI and the API alike, naming the field; DIALER_ENVIRONMENT=development allows http, as it allows a
plain-http public URL."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from campaigns.loader import LoadOptions, load_campaign_csv
from campaigns.provider_options import InvalidOption, validate_provider_options
from tests.engine_harness import REPO
from tests.private_services import dialer_env

DIALER = str(Path(sys.executable).parent / "dialer")
PLAIN = "http://media.example/reminder.wav"
SECURE = "https://media.example/reminder.wav"


@pytest.mark.parametrize("provider", [None, "plivo", "bandwidth", "voipbin"])
def test_a_plain_http_audio_url_is_refused_unless_development_allows_it(provider: str | None) -> None:
    with pytest.raises(InvalidOption) as refused:
        validate_provider_options(provider, {"audio_url": PLAIN})
    assert refused.value.field == "provider_options.audio_url"
    assert refused.value.message.startswith(f"an https URL, not {PLAIN!r}")
    assert validate_provider_options(provider, {"audio_url": SECURE}) == {"audio_url": SECURE}
    assert validate_provider_options(provider, {"audio_url": PLAIN}, plain_http_urls=True)


def _stored_options(database_url: str, campaign_id: int) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT provider_options FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    assert row is not None
    return dict(row[0] or {})


@pytest.fixture()
def campaign(database_url: str) -> int:
    report = load_campaign_csv(name=f"audio-{secrets.token_hex(4)}", options=LoadOptions(),
                               source=io.BytesIO(b"phone\n+14155552671\n"))
    return report.campaign_id


def test_the_api_refuses_a_plain_http_audio_url_in_production_and_takes_it_in_development(
    client: TestClient, auth: dict[str, str], campaign: int, database_url: str
) -> None:
    body = {"provider_options": {"audio_url": PLAIN}}
    with dialer_env({"DIALER_ENVIRONMENT": "production"}):
        refused = client.patch(f"/campaigns/{campaign}", headers=auth, json=body)
        assert refused.status_code == 422, refused.text
        assert [f["field"] for f in refused.json()["fields"]] == ["provider_options.audio_url"]
        assert "an https URL" in refused.text
        assert "audio_url" not in _stored_options(database_url, campaign)
        secure = client.patch(f"/campaigns/{campaign}", headers=auth,
                              json={"provider_options": {"audio_url": SECURE}})
        assert secure.status_code == 200, secure.text
    assert _stored_options(database_url, campaign)["audio_url"] == SECURE
    # This session runs as development (tests/conftest.py): http is allowed there.
    taken = client.patch(f"/campaigns/{campaign}", headers=auth, json=body)
    assert taken.status_code == 200, taken.text
    assert _stored_options(database_url, campaign)["audio_url"] == PLAIN


def test_campaign_set_refuses_a_plain_http_audio_url_outside_development(
    campaign: int, database_url: str
) -> None:
    env = {**os.environ, "DIALER_ENVIRONMENT": "production"}  # this session's key is long enough for it
    out = subprocess.run([DIALER, "campaign", "set", str(campaign), "--audio-url", PLAIN], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert out.returncode == 1 and len(lines) == 1 and "Traceback" not in out.stderr, lines
    assert "provider_options.audio_url: an https URL" in lines[0]
    assert "audio_url" not in _stored_options(database_url, campaign)
    developer = subprocess.run([DIALER, "campaign", "set", str(campaign), "--audio-url", PLAIN], cwd=REPO,
                               capture_output=True, text=True, timeout=60)  # the session's: development
    assert developer.returncode == 0, developer.stderr
    assert _stored_options(database_url, campaign)["audio_url"] == PLAIN


@pytest.mark.parametrize("provider", [None, "plivo", "vobiz"])
def test_a_plain_http_fallback_url_is_refused_unless_development_allows_it(provider: str | None) -> None:
    with pytest.raises(InvalidOption) as refused:
        validate_provider_options(provider, {"fallback_url": PLAIN})
    assert refused.value.field == "provider_options.fallback_url"
    assert refused.value.message.startswith(f"an https URL, not {PLAIN!r}")
    assert validate_provider_options(provider, {"fallback_url": PLAIN}, plain_http_urls=True)


def test_the_api_refuses_a_plain_http_answer_url_in_production_and_takes_it_in_development(
    client: TestClient, auth: dict[str, str], campaign: int, database_url: str
) -> None:
    # The answer document decides where the call goes: over plain http anyone on the path could connect
    # the callee to a number of their choosing.
    answer = "http://answers.example/reminder"
    with dialer_env({"DIALER_ENVIRONMENT": "production"}):
        refused = client.patch(f"/campaigns/{campaign}", headers=auth, json={"answer_url": answer})
        assert refused.status_code == 422, refused.text
        assert [f["field"] for f in refused.json()["fields"]] == ["answer_url"]
        assert "an https URL" in refused.text
    taken = client.patch(f"/campaigns/{campaign}", headers=auth, json={"answer_url": answer})
    assert taken.status_code == 200, taken.text
