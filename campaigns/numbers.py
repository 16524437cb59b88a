"""Pure normalisation of one CSV row: its number to E.164 (or a checked sip: URI), its local time zone,
its variables, or the reason it is rejected. No I/O; the loader runs it in parallel processes.

Time zone of a destination, first that applies:
1. the row's `timezone`/`tz`/`time_zone` column, when it names a zone zoneinfo knows;
2. a sip: URI: the policy's default zone;
3. phonenumbers' zones for the number (geographic prefix, else its country calling code): the policy's
   default zone if it is one of them, else the first (phonenumbers lists them alphabetically, so a
   non-geographic number of a country spanning zones gets an arbitrary one of them: a known limitation);
4. 'Etc/Unknown' (no prefix data): the first zone of the number's country calling code;
5. the policy's default zone (UTC unless the campaign says otherwise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, ValidationResult
from phonenumbers.timezone import UNKNOWN_TIMEZONE
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

from campaigns.destination_kinds import CANNOT_DIAL, SIP, TEL, cannot_dial


class RejectReason(StrEnum):
    """Why a row of a CSV was not loaded (rejected_row.reason)."""

    INVALID_NUMBER = "invalid_number"  # cannot be parsed, or parsed but not a valid number
    NOT_POSSIBLE = "not_possible"  # wrong length for its country: cannot be a number at all
    BLOCKED_TYPE = "blocked_type"  # premium rate, shared cost … (the policy's blocked set)
    WRONG_COLUMN_COUNT = "wrong_column_count"  # more or fewer fields than the header
    DUPLICATE = "duplicate"  # the same number on an earlier line of the same file
    DNC = "dnc"  # on the do-not-call list
    PROVIDER_CANNOT_DIAL = CANNOT_DIAL  # a SIP URI for a provider that dials only E.164 numbers …


TYPE_NAMES: dict[int, str] = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
}
DEFAULT_BLOCKED_TYPES = frozenset({"premium_rate", "shared_cost", "uan", "pager", "voicemail"})

# sip:user@host[:port]; the user part keeps to RFC 3261 unreserved characters and %XX escapes.
_SIP_URI = re.compile(
    r"sip:(?P<user>(?:[A-Za-z0-9_.!~*'()&=+$,;?/-]|%[0-9A-Fa-f]{2}){1,64})"
    r"@(?P<host>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::(?P<port>[0-9]{1,5}))?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class NumberPolicy:
    """How a campaign reads its numbers; with its account known, the provider's name and the kinds of
    destination it dials (campaigns.destination_kinds), and None when any kind may be loaded."""

    default_region: str = "US"
    blocked_types: frozenset[str] = DEFAULT_BLOCKED_TYPES
    default_timezone: str = "UTC"
    provider: str | None = None
    destination_kinds: frozenset[str] | None = None

    def refusal(self, kind: str) -> NormalisedNumber | None:
        """The rejection of a well-formed destination of `kind` that the provider cannot dial, or None."""
        if self.destination_kinds is None or kind in self.destination_kinds:
            return None
        detail = cannot_dial(self.provider or "this provider", self.destination_kinds, kind)
        return NormalisedNumber(reason=RejectReason.PROVIDER_CANNOT_DIAL, detail=detail)


@dataclass(frozen=True)
class RowLayout:
    """Where things are in a row: the header names, the phone column and the time zone column."""

    header: tuple[str, ...]
    phone_index: int
    timezone_index: int | None = None
    delimiter: str = ","
    variable_indices: tuple[int, ...] = field(default=())

    @classmethod
    def build(cls, header: tuple[str, ...], phone_index: int, timezone_index: int | None = None,
              delimiter: str = ",") -> RowLayout:
        """Every column but the phone column is a variable."""
        variables = tuple(i for i in range(len(header)) if i != phone_index)
        return cls(header, phone_index, timezone_index, delimiter, variables)


@dataclass(frozen=True, slots=True)
class NormalisedNumber:
    """A number that can be dialed (number, timezone set) or the reason it cannot (reason, detail set)."""

    number: str | None = None
    timezone: str | None = None
    reason: RejectReason | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class NormalisedRow:
    """One data row: the destination to store, or its rejection."""

    line_no: int
    raw_value: str
    number: str | None
    timezone: str | None
    variables: dict[str, str]
    reason: RejectReason | None = None
    detail: str | None = None


def parse_type_names(names: str | list[str] | frozenset[str]) -> frozenset[str]:
    """Number type names ('premium_rate,uan' or a list) checked against phonenumbers' types."""
    items = names.split(",") if isinstance(names, str) else list(names)
    chosen = frozenset(item.strip().lower() for item in items if item.strip())
    unknown = chosen - set(TYPE_NAMES.values())
    if unknown:
        raise ValueError(f"unknown number type(s) {sorted(unknown)}; known: {sorted(TYPE_NAMES.values())}")
    return chosen


@lru_cache(maxsize=4096)
def valid_timezone(name: str) -> str | None:
    """The zone name if zoneinfo knows it, else None (cached: a column repeats a few names)."""
    name = name.strip()
    if not name or name.startswith(("/", ".")) or ".." in name:
        return None
    try:
        ZoneInfo(name)
    except (ValueError, OSError, KeyError):
        return None
    return name


def normalise_sip_uri(raw: str) -> str | None:
    """The URI with scheme and host lower-cased if it is a sane sip:user@host[:port], else None."""
    match = _SIP_URI.fullmatch(raw.strip())
    if match is None:
        return None
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        return None
    uri = f"sip:{match.group('user')}@{match.group('host').lower()}"
    return f"{uri}:{port}" if port else uri


@lru_cache(maxsize=65536)
def _zone_for_prefix(digits: str, geographical: bool, default_timezone: str) -> str:
    """The zone for E.164 digits cut to the longest prefix in the data, so the cache key repeats."""
    zones: tuple[str, ...] | None = None
    if geographical:
        for length in range(min(TIMEZONE_LONGEST_PREFIX, len(digits)), 0, -1):
            zones = TIMEZONE_DATA.get(digits[:length])
            if zones is not None:
                break
    if zones is None or zones[0] == UNKNOWN_TIMEZONE:
        zones = None
        for length in range(min(3, len(digits)), 0, -1):  # the country calling code: 1 to 3 digits
            zones = TIMEZONE_DATA.get(digits[:length])
            if zones is not None:
                break
    if zones is None or zones[0] == UNKNOWN_TIMEZONE or valid_timezone(zones[0]) is None:
        return default_timezone
    return default_timezone if default_timezone in zones else zones[0]


def timezone_for_number(e164: str, number_type: int, country_code: int, default_timezone: str) -> str:
    """The local zone of a valid E.164 number (see the module docstring for the order)."""
    geographical = phonenumbers.is_number_type_geographical(number_type, country_code)
    return _zone_for_prefix(e164[1:1 + TIMEZONE_LONGEST_PREFIX], geographical, default_timezone)


def normalise_number(raw: str, policy: NumberPolicy) -> NormalisedNumber:
    """E.164 (or a sip: URI) and its zone, or why the value cannot be dialed."""
    text = raw.strip()
    if not text:
        return NormalisedNumber(reason=RejectReason.INVALID_NUMBER, detail="empty")
    if text[:4].lower() == "sip:":
        uri = normalise_sip_uri("sip:" + text[4:])
        if uri is None:
            return NormalisedNumber(reason=RejectReason.INVALID_NUMBER, detail="malformed sip: URI")
        return policy.refusal(SIP) or NormalisedNumber(number=uri, timezone=policy.default_timezone)
    try:
        parsed = phonenumbers.parse(text, policy.default_region)
    except NumberParseException as exc:
        detail = str(exc.args[0]) if exc.args else None
        return NormalisedNumber(reason=RejectReason.INVALID_NUMBER, detail=detail)
    possible = phonenumbers.is_possible_number_with_reason(parsed)
    if possible != ValidationResult.IS_POSSIBLE:
        return NormalisedNumber(reason=RejectReason.NOT_POSSIBLE, detail=_POSSIBLE_DETAIL.get(possible))
    # number_type() is UNKNOWN exactly when is_valid_number() is False; one call does both jobs.
    number_type = phonenumbers.number_type(parsed)
    if number_type == PhoneNumberType.UNKNOWN:
        return NormalisedNumber(reason=RejectReason.INVALID_NUMBER, detail="not a valid number")
    type_name = TYPE_NAMES.get(number_type, "unknown")
    if type_name in policy.blocked_types:
        return NormalisedNumber(reason=RejectReason.BLOCKED_TYPE, detail=type_name)
    e164 = f"+{parsed.country_code}{phonenumbers.national_significant_number(parsed)}"
    zone = timezone_for_number(e164, number_type, parsed.country_code or 0, policy.default_timezone)
    return policy.refusal(TEL) or NormalisedNumber(number=e164, timezone=zone)


_POSSIBLE_DETAIL = {
    ValidationResult.INVALID_COUNTRY_CODE: "invalid country code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "invalid length",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "local number without its area code",
}


def normalise_row(line_no: int, fields: list[str], layout: RowLayout, policy: NumberPolicy) -> NormalisedRow:
    """One data row to a destination or a rejection; the variables are every column but the phone."""
    if len(fields) != len(layout.header):
        return NormalisedRow(line_no, layout.delimiter.join(fields), None, None, {},
                             RejectReason.WRONG_COLUMN_COUNT,
                             f"expected {len(layout.header)} fields, found {len(fields)}")
    raw = fields[layout.phone_index]
    result = normalise_number(raw, policy)
    if result.reason is not None:
        return NormalisedRow(line_no, raw, None, None, {}, result.reason, result.detail)
    header = layout.header
    variables = {header[i]: fields[i] for i in layout.variable_indices}
    timezone = result.timezone
    if layout.timezone_index is not None:
        timezone = valid_timezone(fields[layout.timezone_index]) or timezone
    return NormalisedRow(line_no, raw, result.number, timezone, variables)


def normalise_caller_id(raw: str, region: str) -> str:
    """A caller ID as E.164 (or sip: URI); ValueError saying why when it is not dialable."""
    result = normalise_number(raw, NumberPolicy(default_region=region, blocked_types=frozenset()))
    if result.number is None:
        raise ValueError(f"caller ID {raw!r} is not a valid number ({result.detail or result.reason})")
    return result.number


def check_region(region: str) -> str:
    """An upper-cased region code phonenumbers knows; ValueError otherwise."""
    code = region.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown region {region!r}; use an ISO 3166 code such as US, GB, IN, DE")
    return code
