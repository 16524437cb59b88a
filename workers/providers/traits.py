"""What the rest of the system knows about a provider, as data each adapter declares once.

Grouped by who reads it: the dialer sizes requests and campaigns by `limits`; the reaper and the operator's
hang-up ask what `api` offers; the callback receiver acknowledges and checks replays by `callbacks`; the
answer handler writes its document by `answer`; accounts are checked by `accounts`; campaigns' options
and destinations are checked by `options`. The adapter's methods
(workers.providers.base) are only what differs in code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from workers.providers.keypress import KeypressDialect

# A campaign limit on a call: its ring timeout ("ring") or its time limit once answered ("time").
CallLimit = Literal["ring", "time"]


@dataclass(frozen=True)
class RequestLimits:
    """How much one call-creation request may ask of the carrier."""

    max_destinations: int = 1  # destinations per create request; above 1 the dialer sends bulks
    max_ring_timeout_s: int = 600  # the longest ring a campaign may ask of this provider


@dataclass(frozen=True)
class CallApi:
    """What the carrier's API offers besides creating calls."""

    has_call_status: bool = False  # a status lookup of one call (the reaper)
    # The status API answers for a bare request id of a bulk answer (the reaper asks with the batch's ids
    # when every callback of a bulk was lost).
    request_ids_lookup: bool = False
    # A hang-up API for live calls (`dialer campaign cancel --hangup`). None of the seeds documents one;
    # the adapters that have one follow the provider's public API reference (docs/DESIGN.md lists them).
    has_hangup: bool = False
    # The campaign limits this carrier cannot be told at creation, which the dialer enforces itself by
    # ending calls through the hang-up API (workers.housekeeping.call_limits): "ring" (an unanswered call
    # at its ring timeout), "time" (an answered one at its time limit). VoIPbin takes neither; Vobiz's one
    # bound, hangup_on_ring, may bound the talk too, so it leaves "ring". An account's reading may narrow
    # it: ProviderAdapter.limits_the_dialer_enforces(account) is what the dialer asks.
    dialer_enforces: frozenset[CallLimit] = frozenset()


@dataclass(frozen=True)
class CallbackRules:
    """How the carrier's callbacks are received."""

    nonce_headers: tuple[str, ...] = ()  # one-time nonces of signed callbacks: replay-checked and kept
    ack_status: int = 200  # the status a stored callback is acknowledged with


@dataclass(frozen=True)
class AnswerMarkup:
    """What answers an answer callback: call-control XML (`document_kind` "xml") whose verbs play a message,
    or no document at all ("none": the call's actions were given at creation)."""

    document_kind: Literal["xml", "none"] = "xml"
    # Whether a campaign's own answer URL can be handed the call (VoIPbin fetches no call control).
    takes_answer_url: bool = True
    speak_verb: str = "Speak"
    speak_voice_attribute: str = "voice"
    speak_language_attribute: str = "language"
    play_verb: str = "Play"
    redirect_url_attribute: str | None = None  # BXML: <Redirect redirectUrl="…"/>; else its text
    # Opt-out keypress: the markup's digit-gathering dialect, or None where it cannot gather
    # (workers.providers.keypress says which and why).
    keypress: KeypressDialect | None = None


@dataclass(frozen=True)
class AccountRules:
    """What an account of this provider must carry (option name -> what it is), and whether callback times
    are the console's local time (an account `time_zone` option then applies)."""

    required_options: Mapping[str, str] = field(default_factory=dict)
    local_callback_times: bool = False
    # Options that say which reading of a silent page the carrier follows: name -> its values, the default
    # first (Vobiz `hangup_on_ring`: "call" or "ring").
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class CallOptionSupport:
    """Which optional campaign options the provider takes (`supported`, among
    campaigns.provider_options.OPTIONAL_CALL_OPTIONS), which machine-detection modes the
    adapter really implements ("true": detect and report; "hangup": also end the call on a machine), and
    which destinations its page allows ("tel": E.164 numbers; "sip": SIP URIs)."""

    supported: frozenset[str] = frozenset({"audio_url"})
    machine_detection_modes: frozenset[str] = frozenset({"true", "hangup"})
    destination_kinds: frozenset[str] = frozenset({"tel"})


@dataclass(frozen=True)
class ProviderTraits:
    """One provider's knowledge: its kind, the API root an account added without --base-url gets, and the
    groups above (each defaults to the most common carrier's)."""

    kind: str
    default_base_url: str
    limits: RequestLimits = RequestLimits()
    api: CallApi = CallApi()
    callbacks: CallbackRules = CallbackRules()
    answer: AnswerMarkup = AnswerMarkup()
    accounts: AccountRules = field(default_factory=AccountRules)
    options: CallOptionSupport = CallOptionSupport()
