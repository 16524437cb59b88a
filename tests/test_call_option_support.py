"""First-class call options (caller name, SIP headers, fallback URL, send digits, machine-detection time,
callback retries) are typed, and a campaign using one its provider lacks is refused when it is set, when its
account changes, and at start, naming the option and the provider."""

from __future__ import annotations

import io
import uuid
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

import workers.providers.registry  # noqa: F401  (registers the provider kinds and what each takes)
from campaigns import control
from campaigns.accounts import add_account
from campaigns.errors import InvalidRequest
from campaigns.loader import LoadOptions, load_campaign_csv
from campaigns.provider_options import (
    OPTIONAL_CALL_OPTIONS,
    InvalidOption,
    unsupported_option,
    validate_provider_options,
)
from workers.providers.registry import PROVIDERS


def _account(conn: psycopg.Connection, provider: str) -> int:
    options: dict[str, Any] = (
        {"api_username": "u", "application_id": "app"} if provider == "bandwidth" else {}
    )
    account_id = add_account(conn, name=f"support-{provider}-{uuid.uuid4().hex[:6]}", provider=provider,
                             auth_id="A", auth_token="t", cps=1, max_concurrent=1, options=options)
    conn.commit()
    return account_id


def _campaign(conn: psycopg.Connection, account_id: int | None) -> int:
    report = load_campaign_csv(name=f"support-{uuid.uuid4().hex[:6]}",
                               source=io.BytesIO(b"phone\n+14155550123\n"),
                               options=LoadOptions(default_region="US"))
    settings = control.CampaignSettings(account_id=account_id, caller_id="+14155550100")
    control.configure(conn, report.campaign_id, settings)
    return report.campaign_id


@pytest.mark.parametrize(("options", "field"), [
    ({"caller_name": "x" * 51}, "caller_name"),
    ({"sip_headers": {"Team": "a,b=c"}}, "sip_headers"),
    ({"sip_headers": {"X-Team": "blue"}}, "sip_headers"),
    ({"fallback_url": "ftp://example.com/x"}, "fallback_url"),
    ({"send_digits": "12;3"}, "send_digits"),
    ({"machine_detection_time": 1500}, "machine_detection_time"),
    ({"callback_retries": 9}, "callback_retries"),
    ({"audio_url": "javascript:alert(1)"}, "audio_url"),
])
def test_each_option_is_checked_by_its_type_and_range(options: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidOption) as raised:
        validate_provider_options(None, options)
    assert raised.value.field.startswith(f"provider_options.{field}")


def test_every_provider_declares_its_options_within_the_known_ones() -> None:
    for kind, adapter in PROVIDERS.items():
        support = adapter.traits.options
        assert support.supported <= OPTIONAL_CALL_OPTIONS, kind
        assert support.machine_detection_modes <= {"true", "hangup"}, kind
        assert support.destination_kinds and support.destination_kinds <= {"tel", "sip"}, kind


def test_an_option_a_provider_lacks_is_refused_by_name() -> None:
    lacking = [(kind, name) for kind, adapter in PROVIDERS.items()
               for name in sorted(OPTIONAL_CALL_OPTIONS - adapter.traits.options.supported)]
    assert lacking, "some provider lacks some option"
    kind, name = lacking[0]
    value: Any = {"A": "b"} if name == "sip_headers" else 2000 if name == "machine_detection_time" else "1"
    refusal = unsupported_option(kind, {name: value})
    assert refusal is not None
    assert refusal.field == f"provider_options.{name}"
    assert kind in refusal.message


def test_a_campaign_is_refused_an_option_its_provider_lacks_when_set_moved_and_started(
    database_url: str,
) -> None:
    lacking = next((kind, name) for kind, adapter in PROVIDERS.items()
                   for name in sorted(OPTIONAL_CALL_OPTIONS - adapter.traits.options.supported)
                   if name == "caller_name")
    kind = lacking[0]
    taking = next(k for k, a in PROVIDERS.items() if "caller_name" in a.traits.options.supported) \
        if any("caller_name" in a.traits.options.supported for a in PROVIDERS.values()) else None
    with psycopg.connect(database_url) as conn:
        lacking_account = _account(conn, kind)
        campaign_id = _campaign(conn, lacking_account)
        with pytest.raises(InvalidRequest, match=f"caller_name.*{kind}"):
            control.configure(conn, campaign_id,
                              control.CampaignSettings(provider_options={"caller_name": "Clinic"}))
        conn.rollback()
        if taking is None:
            return
        # Set on an account that takes it, then moved to one that does not: refused at the move.
        other = _campaign(conn, _account(conn, taking))
        control.configure(conn, other, control.CampaignSettings(provider_options={"caller_name": "Clinic"}))
        with pytest.raises(InvalidRequest, match=f"caller_name.*{kind}"):
            control.configure(conn, other, control.CampaignSettings(account_id=lacking_account))
        conn.rollback()
        # A row written around the checks (an older version, a hand edit) still does not start.
        conn.execute("UPDATE campaign SET account_id = %s WHERE id = %s", (lacking_account, other))
        conn.commit()
        with pytest.raises(InvalidRequest, match=f"caller_name.*{kind}"):
            control.start(conn, other)
        conn.rollback()


def test_the_cli_takes_sip_headers_as_name_value_pairs(database_url: str) -> None:
    from workers.entrypoints.cli import app

    with psycopg.connect(database_url) as conn:
        campaign_id = _campaign(conn, None)
    runner = CliRunner()
    bad = runner.invoke(app, ["campaign", "set", str(campaign_id), "--sip-header", "novalue"])
    assert bad.exit_code != 0
    assert "NAME=VALUE" in bad.output
    good = runner.invoke(app, ["campaign", "set", str(campaign_id), "--sip-header", "Team=blue",
                               "--sip-header", "Ward=7", "--send-digits", "1w2", "--caller-name", "Clinic"])
    assert good.exit_code == 0, good.output
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT provider_options FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    assert row is not None
    assert row[0]["sip_headers"] == {"Team": "blue", "Ward": "7"}
    assert row[0]["send_digits"] == "1w2"
    assert row[0]["caller_name"] == "Clinic"


def test_the_api_takes_the_typed_options_and_names_a_bad_one(client: Any, auth: dict[str, str]) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    typed = schema["ProviderOptions"]["properties"]
    assert {"caller_name", "sip_headers", "fallback_url", "send_digits", "machine_detection_time",
            "callback_retries"} <= set(typed)
    upload = client.post("/campaigns", headers=auth, files={"file": ("c.csv", b"phone\n+14155550123\n")},
                         data={"name": f"typed-{uuid.uuid4().hex[:6]}", "default_region": "US"})
    assert upload.status_code == 201, upload.text
    campaign_id = upload.json()["campaign_id"]
    bad = client.patch(f"/campaigns/{campaign_id}", headers=auth,
                       json={"provider_options": {"caller_name": "x" * 51}})
    assert bad.status_code in (400, 422)
    assert "caller_name" in bad.text
    good = client.patch(f"/campaigns/{campaign_id}", headers=auth,
                        json={"provider_options": {"send_digits": "1w2", "sip_headers": {"Team": "blue"}}})
    assert good.status_code == 200, good.text
    options = client.get(f"/campaigns/{campaign_id}", headers=auth).json()["settings"]["provider_options"]
    assert options == {"send_digits": "1w2", "sip_headers": {"Team": "blue"}}


def test_every_provider_plays_an_audio_url() -> None:
    # XML providers play it from the answer document; VoIPbin as a play action at creation.
    for kind, adapter in PROVIDERS.items():
        assert "audio_url" in adapter.traits.options.supported, kind
