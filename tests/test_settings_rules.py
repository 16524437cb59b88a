"""Campaign settings obey one set of rules whichever way they come in (CLI, API, Python), and provider
options have a typed schema per provider; exports are safe to open in a spreadsheet. Pure tests."""

from __future__ import annotations

import io
import math

import pytest

from campaigns import settings_rules
from campaigns.provider_options import InvalidOption, validate_provider_options
from campaigns.results_export import SafeCsvWriter, spreadsheet_safe
from campaigns.settings_rules import CampaignSettings, InvalidSetting
from workers.providers.calls import CallbackUrls, OutboundCall
from workers.providers.registry import adapter_for


def _check(**given: object) -> CampaignSettings:
    return settings_rules.checked(CampaignSettings(**given), region="US", provider="plivo")  # type: ignore[arg-type]


@pytest.mark.parametrize(("given", "field"), [
    ({"caller_id": "abc"}, "caller_id"),
    ({"timezone_override": "Mars/Olympus"}, "timezone"),
    ({"cps": math.nan}, "cps"),
    ({"cps": math.inf}, "cps"),
    ({"cps": -1.0}, "cps"),
    ({"window_days": []}, "days"),
    ({"window_days": [0, 8]}, "days"),
    ({"max_concurrent": 0}, "max_concurrent"),
    ({"answer_url": "javascript:alert(1)"}, "answer_url"),
    ({"provider_options": {"time_limit": -5}}, "provider_options.time_limit"),
    ({"provider_options": {"time_limit": "600"}}, "provider_options.time_limit"),
    ({"provider_options": {"ring_timeout": "soon"}}, "provider_options.ring_timeout"),
    ({"provider_options": {"extra": {"to": "+19005550100"}}}, "provider_options.extra"),
    ({"provider_options": {"extra": {"hangup_url": "https://evil.example/"}}}, "provider_options.extra"),
    ({"provider_options": {"extra": {"answerUrl": "https://evil.example/"}}}, "provider_options.extra"),
    ({"provider_options": {"unheard_of": 1}}, "provider_options.unheard_of"),
])
def test_a_bad_setting_is_refused_naming_its_field(given: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidSetting) as caught:
        _check(**given)
    assert caught.value.field == field


def test_good_settings_are_normalised() -> None:
    settings = _check(caller_id="(415) 555-0100", timezone_override="Europe/Paris", cps=2,
                      window_days=[5, 1, 1],
                      provider_options={"time_limit": 600, "machine_detection": "hangup",
                                        "extra": {"caller_name": "Clinic"}})
    assert settings.caller_id == "+14155550100" and settings.window_days == [1, 5] and settings.cps == 2.0


@pytest.mark.parametrize(("spec", "days"), [("1-5", [1, 2, 3, 4, 5]), ("1,3,5", [1, 3, 5]), ("7", [7])])
def test_days_are_parsed_the_same_everywhere(spec: str, days: list[int]) -> None:
    assert settings_rules.parse_days(spec) == days


@pytest.mark.parametrize("spec", ["5-1", "x", "0-3", "", "1-9"])
def test_a_bad_days_spec_is_refused(spec: str) -> None:
    with pytest.raises(InvalidSetting, match="days"):
        settings_rules.parse_days(spec)


def test_bandwidth_ring_timeout_is_bounded_by_its_call_timeout_range() -> None:
    assert validate_provider_options("plivo", {"ring_timeout": 500}) == {"ring_timeout": 500}
    with pytest.raises(InvalidOption, match="300"):
        validate_provider_options("bandwidth", {"ring_timeout": 500})


URLS = CallbackUrls(answer_url="https://dialer.example/a", hangup_url="https://dialer.example/h",
                    ring_url=None, username="dialer", password="pw")


@pytest.mark.parametrize("provider", ["plivo", "vobiz", "tryvox", "voipbin", "bandwidth"])
def test_extra_written_before_the_schema_still_cannot_redirect_a_call(provider: str) -> None:
    """A row stored before options were checked: the body builder keeps the dialer's own fields."""
    from workers.providers import bandwidth, plivo, tryvox, voipbin

    extra = {"to": "+19005550100", "from": "+19005550101", "hangup_url": "https://evil.example/h",
             "answerUrl": "https://evil.example/a", "ring_url": "https://evil.example/r", "password": "x",
             "destinations": [], "source": {}, "caller_name": "Clinic"}
    call = OutboundCall(caller_id="+14155550100", destinations=["+12125550100"], callbacks=URLS, extra=extra)
    body = {"plivo": plivo.plivo_call_body, "vobiz": plivo.plivo_call_body, "tryvox": tryvox.tryvox_call_body,
            "voipbin": voipbin.voipbin_call_body,
            "bandwidth": lambda c: bandwidth.bandwidth_call_body(c, "app")}[provider](call)
    assert adapter_for(provider)  # a real provider
    text = repr(body)
    assert "evil.example" not in text and "+19005550100" not in text and "9005550101" not in text
    assert body.get("caller_name") == "Clinic"


@pytest.mark.parametrize("cell", ["=HYPERLINK(\"http://x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)",
                                  "\tx", "\rx"])
def test_formula_cells_are_neutralised(cell: str) -> None:
    assert spreadsheet_safe(cell) == "'" + cell
    buffer = io.StringIO()
    SafeCsvWriter(buffer).writerow([cell, 5])
    assert buffer.getvalue().startswith(("'", "\"'"))


@pytest.mark.parametrize("cell", ["+12125550100", "-5", "42", "hello", 7, None])
def test_numbers_and_plain_text_are_left_alone(cell: object) -> None:
    assert spreadsheet_safe(cell) == cell
