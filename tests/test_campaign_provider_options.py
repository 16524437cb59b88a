"""A campaign's provider options say what the carriers take: machine detection as the seeds' words only
("true"/"hangup", never "false"), and no answer URL on a provider that cannot fetch one (VoIPbin)."""

from __future__ import annotations

import io
import uuid
from typing import Any

import psycopg
import pytest

import workers.providers.registry  # noqa: F401  (registers the provider kinds with campaigns.accounts)
from campaigns import control
from campaigns.accounts import add_account
from campaigns.call_options import machine_detection_mode
from campaigns.errors import InvalidRequest
from campaigns.loader import LoadOptions, load_campaign_csv


@pytest.mark.parametrize(("value", "mode"), [
    (None, None), (False, None), ("false", None), ("no", None), ("0", None), ("", None),
    (True, "true"), ("true", "true"), ("Yes", "true"), ("1", "true"),
    ("hangup", "hangup"), ("HANGUP", "hangup"),
])
def test_machine_detection_is_normalised_to_the_carriers_words(value: Any, mode: str | None) -> None:
    assert machine_detection_mode({"machine_detection": value}) == mode


def _campaign(conn: psycopg.Connection, provider: str, **options: Any) -> int:
    account_id = add_account(conn, name=f"opts-{provider}-{uuid.uuid4().hex[:6]}", provider=provider,
                             auth_id="A", auth_token="t", cps=1, max_concurrent=1, options=options)
    conn.commit()
    csv = io.BytesIO(b"phone\n+14155550123\n")
    report = load_campaign_csv(name=f"opts-{uuid.uuid4().hex[:6]}", source=csv,
                               options=LoadOptions(default_region="US"))
    control.configure(conn, report.campaign_id,
                      control.CampaignSettings(account_id=account_id, caller_id="+14155550100"))
    return report.campaign_id


def test_a_machine_detection_the_carriers_do_not_know_is_refused(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        campaign_id = _campaign(conn, "plivo")
        with pytest.raises(InvalidRequest, match="machine_detection must be true, hangup or false"):
            control.configure(conn, campaign_id,
                              control.CampaignSettings(provider_options={"machine_detection": "maybe"}))
        off = control.CampaignSettings(provider_options={"machine_detection": "no"})
        control.configure(conn, campaign_id, off)


def test_a_voipbin_campaign_with_an_answer_url_does_not_start(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        campaign_id = _campaign(conn, "voipbin")
        control.configure(conn, campaign_id, control.CampaignSettings(answer_url="https://ivr.example/answer"))
        with pytest.raises(InvalidRequest, match="answer URL"):
            control.start(conn, campaign_id)
        conn.rollback()
        plivo = _campaign(conn, "plivo")
        control.configure(conn, plivo, control.CampaignSettings(answer_url="https://ivr.example/answer"))
        control.start(conn, plivo)
        state = conn.execute("SELECT state FROM campaign WHERE id = %s", (plivo,)).fetchone()
        assert state == ("running",)
        conn.execute("UPDATE campaign SET state = 'paused' WHERE id = %s", (plivo,))
        conn.commit()
