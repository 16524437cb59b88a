"""The typed schema of a campaign's provider options, per provider (pure).

Options reach a carrier's create-call body, so they are input like any other: numbers are numbers within
the carrier's range, and `extra` (fields passed through to the body) can never set the destination, the
caller ID, the callback URLs or their credentials.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator

from campaigns.call_options import machine_detection_mode
from campaigns.errors import InvalidRequest

# Body fields `extra` may never set, whatever the provider: who is called, from where, and where (and with
# which credentials) the carrier reports. Any key naming a URL is refused too.
PROTECTED_BODY_FIELDS = frozenset({
    "to", "from", "source", "destinations", "tag", "username", "password", "applicationid", "application_id",
    "machinedetection", "fallbackusername", "fallbackpassword",
})


SIP_HEADER_PART = re.compile(r"[A-Za-z0-9]{1,64}")
MAX_SIP_HEADERS = 10


def protected_body_field(name: str) -> bool:
    """True for a body field that only the dialer sets (case-insensitive; any *url* field)."""
    key = name.lower()
    return key in PROTECTED_BODY_FIELDS or "url" in key or "method" in key


# Inside `extra` (VoIPbin's `actions`, page, Simple outbound call with TTS and connect: a `connect` action
# carries its own source and destinations), no value at any depth may dial or name another party: an action of
# a type that connects the call on, or an object carrying a number field. Media URLs (`stream_urls`, page,
# Simple outbound call with media file play) and flow jump ids (`target_id`, `target_ids`, Simple outbound
# call with Branch) stay allowed: they move within the call, not out of it.
REDIRECTING_ACTION_TYPES = frozenset({"connect", "transfer"})
NESTED_NUMBER_FIELDS = frozenset({"destination", "destinations", "number", "numbers", "target", "source",
                                  "to", "from"})


def redirect_in_extra(value: Any, path: str = "extra") -> str | None:
    """The path of the first nested value in `extra` that would connect the call to a number, or None."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}"
            name = str(key).lower()
            if path != "extra" and name in NESTED_NUMBER_FIELDS:
                return where
            if name == "type" and isinstance(item, str) and item.lower() in REDIRECTING_ACTION_TYPES:
                return where
            found = redirect_in_extra(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = redirect_in_extra(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


class ProviderOptions(BaseModel):
    """Options every provider takes; a provider's own limits narrow them (register_option_support)."""

    model_config = ConfigDict(extra="forbid")

    ring_timeout: StrictInt | None = Field(None, ge=1, le=600, description="Seconds to ring")
    time_limit: StrictInt | None = Field(None, ge=1, le=86400, description="Longest call, seconds")
    machine_detection: Any = None  # the carriers' words, by call_options.machine_detection_mode
    message: str | None = Field(None, min_length=1, max_length=4000, description="What answered calls hear")
    audio_url: str | None = Field(None, min_length=1, max_length=2000, description="Played, not the message")
    voice: str | None = Field(None, min_length=1, max_length=100, description="Voice of the spoken message")
    language: str | None = Field(None, min_length=1, max_length=35, description="Language, e.g. en-GB")
    opt_out_digit: str | None = Field(None, description="Key that adds the number to the account's DNC list")
    evidence_margin_s: StrictInt | None = Field(
        None, ge=0, le=3600, description="Seconds past the ring timeout until an unanswered send is unplaced"
    )
    unsettled_send: Literal["retry", "unknown"] | None = None
    track_ringing: StrictBool | None = None
    bulk: StrictBool | None = None
    caller_name: str | None = Field(None, min_length=1, max_length=50, description="Caller's display name")
    sip_headers: dict[str, str] | None = Field(
        None, description="SIP headers sent with the call and echoed on its callbacks (letters and digits)"
    )
    fallback_url: str | None = Field(
        None, min_length=1, max_length=2000, description="Your URL tried when the answer URL fails"
    )
    send_digits: str | None = Field(
        None, pattern=r"^[0-9*#wW]{1,64}(@[0-9]{2,5})?$", description="DTMF sent once connected, e.g. 1w2W3"
    )
    machine_detection_time: StrictInt | None = Field(
        None, ge=2000, le=10000, description="Milliseconds allowed to tell a machine from a person"
    )
    callback_retries: StrictInt | None = Field(
        None, ge=0, le=5, description="How often the carrier retries a callback that failed"
    )
    extra: dict[str, Any] | None = Field(None, description="Fields passed through to the create-call body")

    @field_validator("machine_detection")
    @classmethod
    def _machine_detection_in_the_carriers_words(cls, value: Any) -> Any:
        machine_detection_mode({"machine_detection": value})  # ValueError naming the accepted words
        return value

    @field_validator("sip_headers")
    @classmethod
    def _sip_headers_letters_and_digits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        # Plivo's page (Arguments: `sip_headers`): keys and values are letters and digits; they are joined as
        # k=v,k=v, so any other character would change the header list.
        for key, header_value in (value or {}).items():
            if not (SIP_HEADER_PART.fullmatch(key) and SIP_HEADER_PART.fullmatch(str(header_value))):
                raise ValueError(f"sip header {key!r}: keys and values are letters and digits only")
        if value is not None and len(value) > MAX_SIP_HEADERS:
            raise ValueError(f"at most {MAX_SIP_HEADERS} sip headers")
        return value

    @field_validator("fallback_url", "audio_url")
    @classmethod
    def _an_http_url(cls, value: str | None) -> str | None:
        if value is not None and (
            not value.startswith(("https://", "http://")) or any(c in value for c in " \t\r\n")
        ):
            raise ValueError(f"an http(s) URL, not {value[:80]!r}")
        return value

    @field_validator("extra")
    @classmethod
    def _extra_cannot_redirect_the_call(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for key in value or {}:
            if protected_body_field(key):
                raise ValueError(f"extra may not set {key!r}: the dialer sets the numbers and callback URLs")
        redirect = redirect_in_extra(value or {})
        if redirect is not None:
            raise ValueError(f"{redirect}: extra may not connect the call on or name a number (no connect, "
                             "transfer, destination, number or target anywhere inside it)")
        return value


# The options a provider may lack: each adapter declares which of them its page offers
# (workers.providers.traits.CallOptionSupport), and a campaign using one its provider lacks is refused when
# set, when its account changes and at start.
OPTIONAL_CALL_OPTIONS = frozenset({
    "caller_name", "sip_headers", "fallback_url", "send_digits", "machine_detection_time", "callback_retries",
    "audio_url",
})


@dataclass(frozen=True)
class OptionSupport:
    """What a provider's adapter declares of the campaign options: the longest ring it takes, which of the
    OPTIONAL_CALL_OPTIONS it takes, and its machine-detection modes (workers.providers.registry registers
    each provider's: the domain names no provider)."""

    max_ring_timeout_s: int
    supported: frozenset[str]
    machine_detection_modes: frozenset[str]


_OPTION_SUPPORT: dict[str, OptionSupport] = {}


def register_option_support(kind: str, support: OptionSupport) -> None:
    _OPTION_SUPPORT[kind] = support


def unsupported_option(provider: str | None, options: Mapping[str, Any]) -> InvalidOption | None:
    """The first option `provider` cannot honour (an optional one it lacks, or a machine-detection mode its
    adapter does not implement), as the error to raise; None when all are fine or the provider is unknown."""
    support = _OPTION_SUPPORT.get(provider or "")
    if support is None:
        return None
    for name in sorted(OPTIONAL_CALL_OPTIONS - support.supported):
        if options.get(name) not in (None, {}, ""):
            return InvalidOption(f"provider_options.{name}", f"{provider} does not take {name}")
    mode = machine_detection_mode(options)
    if mode is not None and mode not in support.machine_detection_modes:
        offered = " or ".join(sorted(support.machine_detection_modes)) or "nothing"
        return InvalidOption(
            "provider_options.machine_detection",
            f"{provider} cannot do machine detection {mode!r} (it offers {offered})",
        )
    return None


class InvalidOption(InvalidRequest):
    """A provider option that breaks its schema; `field` is its dotted name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


PLAIN_HTTP_HINT = "(plain http only with DIALER_ENVIRONMENT=development)"


def https_refusal(value: object, *, plain_http: bool) -> str | None:
    """Why a URL the carrier fetches for a call must not be `value` (None: it may be). The answer and
    fallback documents decide where the call goes and the audio what every callee hears, in the caller ID's
    name: over plain http anyone on that path chooses. `plain_http` (development only) allows http."""
    if isinstance(value, str) and not plain_http and not value.startswith("https://"):
        return f"an https URL, not {value[:80]!r} {PLAIN_HTTP_HINT}"
    return None


def validate_provider_options(
    provider: str | None, options: dict[str, Any], *, plain_http_urls: bool = False
) -> dict[str, Any]:
    """The options as given (only the keys given), or InvalidOption naming the first bad one.
    `plain_http_urls` (development only) lets audio_url and fallback_url be http as well as https."""
    try:
        ProviderOptions.model_validate(options)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in ("provider_options", *error["loc"]))
        raise InvalidOption(where, str(error["msg"]).removeprefix("Value error, ")) from None
    for field in ("fallback_url", "audio_url"):
        plain = https_refusal(options.get(field), plain_http=plain_http_urls)
        if plain is not None:
            raise InvalidOption(f"provider_options.{field}", plain)
    support = _OPTION_SUPPORT.get(provider or "")
    limit = support.max_ring_timeout_s if support else None
    ring = options.get("ring_timeout")
    if limit is not None and isinstance(ring, int) and ring > limit:
        raise InvalidOption("provider_options.ring_timeout", f"at most {limit} seconds for {provider}")
    refusal = unsupported_option(provider, options)
    if refusal is not None:
        raise refusal
    return options
