"""Pure row normalisation: numbers, sip: URIs, time zones, type policy (no database)."""

from __future__ import annotations

import phonenumbers
import pytest

from campaigns.numbers import (
    NumberPolicy,
    RejectReason,
    RowLayout,
    check_region,
    normalise_caller_id,
    normalise_number,
    normalise_row,
    normalise_sip_uri,
    parse_type_names,
    valid_timezone,
)

US = NumberPolicy(default_region="US")
R = RejectReason


@pytest.mark.parametrize(("raw", "region", "number"), [
    ("(415) 555-2671", "US", "+14155552671"),
    ("415.555.2671", "US", "+14155552671"),
    (" +1 415 555 2671 ", "US", "+14155552671"),
    ("+44 20 7946 0018", "US", "+442079460018"),
    ("020 7946 0018", "GB", "+442079460018"),
    ("07400 123456", "GB", "+447400123456"),
    ("+91 98765 43210", "US", "+919876543210"),
    ("030 901820", "DE", "+4930901820"),
    ("+39 06 6982 1234", "US", "+390669821234"),  # Italian leading zero kept
])
def test_valid_numbers_become_e164(raw: str, region: str, number: str) -> None:
    result = normalise_number(raw, NumberPolicy(default_region=region))
    assert (result.number, result.reason) == (number, None)


@pytest.mark.parametrize(("raw", "reason"), [
    ("", R.INVALID_NUMBER),
    ("   ", R.INVALID_NUMBER),
    ("call me", R.INVALID_NUMBER),
    ("12345", R.NOT_POSSIBLE),
    ("555-1234", R.NOT_POSSIBLE),  # local only: no area code
    ("+1 415 555 2671 99", R.NOT_POSSIBLE),
    ("+999 1234567", R.INVALID_NUMBER),  # no such country code: cannot be parsed
    ("(999) 000-0000", R.INVALID_NUMBER),  # right length, no such area code
    ("+1 900 555 0100", R.BLOCKED_TYPE),  # premium rate
    ("+44 871 234 5678", R.BLOCKED_TYPE),  # UK premium rate
    ("+44 76 2345 6789", R.BLOCKED_TYPE),  # UK pager
    ("sip:", R.INVALID_NUMBER),
    ("sip:bob smith@example.com", R.INVALID_NUMBER),
    ("sip:bob@exa_mple.com", R.INVALID_NUMBER),
    ("sip:bob@example.com:99999", R.INVALID_NUMBER),
])
def test_undialable_values_are_rejected_with_their_reason(raw: str, reason: RejectReason) -> None:
    result = normalise_number(raw, US)
    assert result.number is None
    assert result.reason == reason


def test_blocked_types_follow_the_policy() -> None:
    premium = "+1 900 555 0100"
    assert normalise_number(premium, NumberPolicy(blocked_types=frozenset())).number == "+19005550100"
    blocked = normalise_number("+1 800 555 0100", NumberPolicy(blocked_types=frozenset({"toll_free"})))
    assert (blocked.reason, blocked.detail) == (R.BLOCKED_TYPE, "toll_free")


def test_number_type_unknown_matches_is_valid_number() -> None:
    samples = ["+14155552671", "+19995550100", "+442079460018", "+440000000000", "+4930901820", "+49301"]
    for raw in samples:
        parsed = phonenumbers.parse(raw)
        valid = phonenumbers.number_type(parsed) != phonenumbers.PhoneNumberType.UNKNOWN
        assert valid == phonenumbers.is_valid_number(parsed), raw


@pytest.mark.parametrize(("raw", "uri"), [
    ("sip:alice@example.com", "sip:alice@example.com"),
    ("SIP:Alice@Example.COM:5060", "sip:Alice@example.com:5060"),
    ("sip:+14155552671@10.0.0.1", "sip:+14155552671@10.0.0.1"),
    ("sip:ext%2042@[2001:db8::1]:5080", "sip:ext%2042@[2001:db8::1]:5080"),
    ("sip:bob@example.com;transport=tcp", None),
    ("sip:@example.com", None),
    ("sip:bob@-bad-.com", None),
    ("sip:bob@example.com:0", None),
])
def test_sip_uris_are_checked_and_lower_case_their_host(raw: str, uri: str | None) -> None:
    assert normalise_sip_uri(raw) == uri


def test_sip_uri_gets_the_default_zone() -> None:
    result = normalise_number("sip:alice@example.com", NumberPolicy(default_timezone="Europe/Paris"))
    assert (result.number, result.timezone) == ("sip:alice@example.com", "Europe/Paris")


@pytest.mark.parametrize(("raw", "zone"), [
    ("+14155552671", "America/Los_Angeles"),
    ("+12125550100", "America/New_York"),
    ("+442079460018", "Europe/London"),
    ("+4930901820", "Europe/Berlin"),
    ("+919876543210", "Asia/Calcutta"),
    ("+61 2 9374 4000", "Australia/Sydney"),
])
def test_zone_comes_from_the_number(raw: str, zone: str) -> None:
    assert normalise_number(raw, US).timezone == zone


def test_non_geographic_number_prefers_the_default_zone_among_its_country_zones() -> None:
    toll_free = "+1 800 555 0100"
    assert normalise_number(toll_free, NumberPolicy(default_timezone="America/Chicago")).timezone == \
        "America/Chicago"
    assert normalise_number(toll_free, NumberPolicy(default_timezone="UTC")).timezone == "America/Adak"


def test_valid_timezone_accepts_zoneinfo_names_only() -> None:
    assert valid_timezone("Europe/Paris") == "Europe/Paris"
    assert valid_timezone(" Asia/Tokyo ") == "Asia/Tokyo"
    for bad in ("", "Mars/Olympus", "../etc/passwd", "/etc/localtime", "Europe"):
        assert valid_timezone(bad) is None, bad


LAYOUT = RowLayout.build(("phone", "first_name", "tz"), phone_index=0, timezone_index=2)


def test_row_keeps_every_other_column_as_variables() -> None:
    row = normalise_row(2, ["(415) 555-2671", "Ann", ""], LAYOUT, US)
    assert row.number == "+14155552671"
    assert row.variables == {"first_name": "Ann", "tz": ""}
    assert row.timezone == "America/Los_Angeles"


def test_row_zone_column_wins_when_valid_and_is_ignored_when_not() -> None:
    assert normalise_row(2, ["+14155552671", "Ann", "Europe/Paris"], LAYOUT, US).timezone == "Europe/Paris"
    assert normalise_row(3, ["+14155552671", "Ann", "Nowhere/Land"], LAYOUT, US).timezone == \
        "America/Los_Angeles"


def test_row_with_wrong_field_count_is_rejected_with_the_counts() -> None:
    row = normalise_row(7, ["+14155552671", "Ann"], LAYOUT, US)
    assert (row.line_no, row.reason, row.number) == (7, R.WRONG_COLUMN_COUNT, None)
    assert row.detail == "expected 3 fields, found 2"
    assert row.raw_value == "+14155552671,Ann"


def test_rejected_row_keeps_the_raw_value() -> None:
    row = normalise_row(4, ["  12345 ", "Bo", ""], LAYOUT, US)
    assert (row.reason, row.raw_value) == (R.NOT_POSSIBLE, "  12345 ")


def test_type_names_are_checked() -> None:
    assert parse_type_names("premium_rate, UAN") == frozenset({"premium_rate", "uan"})
    with pytest.raises(ValueError, match="premium"):
        parse_type_names("premium")


def test_caller_id_and_region_are_checked() -> None:
    assert normalise_caller_id("(415) 555-2671", "US") == "+14155552671"
    assert check_region("gb") == "GB"
    with pytest.raises(ValueError):
        normalise_caller_id("12", "US")
    with pytest.raises(ValueError):
        check_region("XX")
