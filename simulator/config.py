"""The simulator's configuration: accounts and their limits, the outcome mix, faults, callback retries.

Loaded from a JSON file or a dict; `apply_patch` changes it at runtime (`POST /_sim/config`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

PROVIDERS = ("plivo", "vobiz", "tryvox", "voipbin", "bandwidth")
OUTCOMES = ("answered", "busy", "no_answer", "failed", "machine")
CALLBACK_SHAPES = ("seed", "rich", "form")
# Account settings with a fixed set of values (the first is the default).
ACCOUNT_CHOICES: dict[str, tuple[str, ...]] = {
    "hangup_on_ring_reading": ("call", "ring"),
    "bulk_request_uuid": ("string", "first", "list"),
    "vobiz_signature_url": ("path", "query"),
    "machine_field": ("Machine", "machine"),
    "callback_retry_form": ("fragment", "query"),
    "voipbin_ring_limit": ("none", "dialout", "callee"),
    "voipbin_unanswered_reason": ("noanswer", "normal"),
    "voipbin_cancel_reason": ("cancel", "normal"),
    "voipbin_signature": ("prefixed", "bare"),
    "voipbin_events": ("status", "updated", "hungup"),
    "tryvox_webhook_fields": ("snake", "camel", "plivo"),
    "tryvox_event_names": ("dotted", "plain", "none"),
    "tryvox_machine_result": ("none", "flag", "end_reason"),
    "tryvox_recordings": ("none", "url", "urls"),
    "tryvox_lookup": ("present", "missing"),
    "bandwidth_machine_reply": ("ignored", "bxml"),
    "bandwidth_call_api": ("present", "missing"),
}


class ConfigError(ValueError):
    """The configuration or a patch of it is invalid."""


@dataclass
class Account:
    """One carrier account the simulator accepts calls for."""

    provider: str
    auth_id: str
    auth_token: str
    cps: float = 10.0
    max_concurrent: int = 100
    credit: int | None = None          # calls accepted before 402 (None: unlimited)
    webhook_uri: str | None = None     # VoIPbin: where every call event of the customer goes
    webhook_secret: str | None = None  # VoIPbin: HMAC key of X-VoIPBIN-Signature
    application_id: str | None = None  # Bandwidth: the only applicationId accepted (None: any)
    flow_ids: list[str] | None = None  # VoIPbin: known flows (None: any flow_id exists)
    api_username: str | None = None    # Bandwidth: the API user whose password is auth_token (required)
    time_zone: str = "UTC"             # Plivo/Vobiz: console zone of StartTime/AnswerTime/EndTime
    # "seed": callbacks and answers exactly as the provider's seed shows them (the default); "rich": the
    # fuller shapes of the providers' other docs (Plivo HangupCause*/Duration…); "form": TryVox webhooks
    # form-encoded instead of JSON (its seed does not say which).
    callback_shape: str = "seed"
    # Plivo/Vobiz readings of what their pages leave open (one mode per plausible reading, docs/PROVIDERS.md):
    # `hangup_on_ring` bounds the ringing only ("ring") or ringing and talk ("call", the pages' words);
    # a Vobiz bulk answer's `request_uuid` is one id of the request ("string", Success Response (200 OK)), the
    # first destination's own id ("first") or a list of per-destination ids ("list", Plivo's shape); Vobiz V3
    # signs the URL without its query ("path") or with it ("query"); the machine parameter is spelt `Machine`
    # or `machine`; Plivo callback retries are read from the URL's fragment or its query.
    hangup_on_ring_reading: str = "call"
    bulk_request_uuid: str = "string"
    vobiz_signature_url: str = "path"
    machine_field: str = "Machine"
    callback_retry_form: str = "fragment"
    # VoIPbin readings of what its page leaves open (simulator/providers/voipbin.py, docs/PROVIDERS.md): an
    # unanswered call rings until hung up through the API ("none": no call-level limit), until the carrier's
    # own 60 s dial timeout ("dialout"), or until the callee's side gives up ("callee"); a callee who never
    # answers yields `noanswer` or `normal` with no tm_progressing; the hang-up API on a call not yet
    # answered yields `cancel` or `normal`; the signature is "sha256=<hex>" or a bare "<hex>"; events are
    # named by status (call_ringing … call_hangup), all "call_updated", or the hangup "call_hungup".
    voipbin_ring_limit: str = "none"
    voipbin_unanswered_reason: str = "noanswer"
    voipbin_cancel_reason: str = "cancel"
    voipbin_signature: str = "prefixed"
    voipbin_events: str = "status"
    # TryVox readings (simulator/providers/tryvox.py, docs/PROVIDERS.md): webhook field names as the create
    # answer's snake_case, camelCase, or Plivo's PascalCase form fields; `event` "call.hangup", "hangup" or
    # absent; a machine result absent, a `machine_detected` flag, or an `end_reason` of "answering-machine";
    # hangups of answered calls with no recording, a `recording_url`, or a `recording_urls` list; the
    # assumed call lookup GET …/calls/{call_uuid} present or missing (404).
    tryvox_webhook_fields: str = "snake"
    tryvox_event_names: str = "dotted"
    tryvox_machine_result: str = "none"
    tryvox_recordings: str = "none"
    tryvox_lookup: str = "present"
    # Bandwidth readings (simulator/providers/bandwidth.py): the answer to machineDetectionComplete ignored
    # (its webhook page: modify the call through Update Call) or executed as BXML (its guide: "respond with
    # instructions"); Get Call State and Update Call present or missing (404), as the seed has neither.
    bandwidth_machine_reply: str = "ignored"
    bandwidth_call_api: str = "present"


@dataclass
class OutcomeMix:
    """Seeded weights of call outcomes and the ring/talk time ranges in carrier seconds."""

    answered: float = 70.0
    busy: float = 10.0
    no_answer: float = 10.0
    failed: float = 5.0
    machine: float = 5.0
    talk_time: tuple[float, float] = (5.0, 60.0)
    ring_time: tuple[float, float] = (1.0, 10.0)


@dataclass
class Faults:
    """Fractions (0..1) of callbacks or create requests that misbehave.

    Create requests: `api_5xx` answers 500/502/503 and places nothing; `api_placed_5xx` places the calls
    (their real callbacks follow) but answers 502 or 504, as a gateway timing out at the carrier's edge;
    `api_503` answers 503 with `Retry-After: api_503_retry_after` from the limiter and places nothing;
    `api_429` answers 429 (no Retry-After) to a request within the budget and places nothing, as a carrier
    exactly at budget does now and then;
    `api_slow` holds the request `api_slow_seconds` before anything (past a read timeout: nothing placed);
    `api_no_answer` places the calls and holds the answer `api_no_answer_seconds` (placed, never answered).
    Refusing connections for N seconds is `POST /_sim/outage {"seconds": N}`; one account failing in a
    given window is a scheduled fault (FaultSpec, simulator/schedule.py)."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    delay_max: float = 0.0          # seconds, real time
    reorder: float = 0.0
    api_5xx: float = 0.0
    api_placed_5xx: float = 0.0
    api_503: float = 0.0
    api_503_retry_after: float = 1.0  # seconds, in the Retry-After header
    api_429: float = 0.0
    api_slow: float = 0.0
    api_slow_seconds: float = 0.0   # real time
    api_no_answer: float = 0.0
    api_no_answer_seconds: float = 600.0  # real time


# Timed per-account faults (simulator/schedule.py): "401" credentials refused, as the provider answers bad
# credentials; "402" credit exhausted, as it answers an account out of credit; "5xx" 503 without Retry-After,
# nothing placed; "placed_5xx" the calls placed (their callbacks follow) but answered 502; "refused" the
# whole listener refuses connections (one process serves all its accounts from one socket).
FAULT_KINDS = ("401", "402", "5xx", "placed_5xx", "refused")
FAULT_KEYS = ("account", "fault", "start_in", "seconds")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One scheduled fault as given: `account` fails with `fault` from `start_in` real seconds after the
    schedule is armed, for `seconds` (real time, not scaled by --speed)."""

    account: str
    fault: str
    start_in: float
    seconds: float


LIMITER_KINDS = ("sliding_window", "token_bucket")


@dataclass
class Limiter:
    """How the carrier counts CPS: `sliding_window` admits at most CPS arrivals in any 1-second window
    (strict, like an independent carrier); `token_bucket` refills continuously (a burst of CPS, then CPS
    per second). `arrival_jitter_ms` {mean, spread}: network delay before the limiter counts an arrival."""

    kind: str = "sliding_window"
    jitter_mean_ms: float = 0.0
    jitter_spread_ms: float = 0.0


@dataclass
class CallbackPolicy:
    """Retries of a callback on non-2xx or timeout: attempt n waits backoff * factor**(n-1) / speed."""

    attempts: int = 3
    backoff: float = 1.0
    backoff_factor: float = 2.0
    timeout: float = 5.0


@dataclass
class SimConfig:
    accounts: dict[str, Account] = field(default_factory=dict)  # by auth_id
    outcomes: OutcomeMix = field(default_factory=OutcomeMix)
    faults: Faults = field(default_factory=Faults)
    callbacks: CallbackPolicy = field(default_factory=CallbackPolicy)
    limiter: Limiter = field(default_factory=Limiter)
    # Destination number -> the keys its callee presses when an answer document gathers digits.
    keypresses: dict[str, str] = field(default_factory=dict)
    # Armed when the simulator starts (times from then); at runtime POST /_sim/faults/schedule adds more.
    scheduled_faults: list[FaultSpec] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        limiter = self.limiter
        return {
            "accounts": [asdict(a) for a in self.accounts.values()],
            "outcomes": asdict(self.outcomes),
            "faults": asdict(self.faults),
            "callbacks": asdict(self.callbacks),
            "limiter": {"kind": limiter.kind, "arrival_jitter_ms": {"mean": limiter.jitter_mean_ms,
                                                                    "spread": limiter.jitter_spread_ms}},
            "keypresses": dict(self.keypresses),
        }


DEFAULT_ACCOUNTS: list[dict[str, Any]] = [
    {"provider": "plivo", "auth_id": "MAPLIVO0000000000000", "auth_token": "plivo-token"},
    {"provider": "vobiz", "auth_id": "MA_VOBIZ0001", "auth_token": "vobiz-token"},
    {"provider": "tryvox", "auth_id": "tryvox-account", "auth_token": "tvx_sk_test_simulator"},
    {"provider": "voipbin", "auth_id": "voipbin-customer", "auth_token": "voipbin-token"},
    {"provider": "bandwidth", "auth_id": "5555555", "auth_token": "bandwidth-password",
     "api_username": "bandwidth-api-user", "application_id": "7fc9698a-b04a-468b-9e8f-91238c0d0086"},
]


def _set_fields(target: Any, patch: dict[str, Any], where: str) -> None:
    names = {f.name: f for f in fields(target)}
    for key, value in patch.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key {key!r}")
        current = getattr(target, key)
        if isinstance(current, tuple):
            if not isinstance(value, list | tuple) or len(value) != 2 or float(value[0]) > float(value[1]):
                raise ConfigError(f"{where}.{key}: expected [min, max]")
            value = (float(value[0]), float(value[1]))
        elif isinstance(current, float) and not isinstance(value, int | float):
            raise ConfigError(f"{where}.{key}: expected a number")
        setattr(target, key, value)


def _patch_faults(faults: Faults, patch: dict[str, Any]) -> None:
    """Accept both flat keys and the nested {"delay": {"fraction", "max_seconds"}} shape."""
    flat: dict[str, Any] = {}
    for key, value in patch.items():
        if key == "delay" and isinstance(value, dict):
            flat["delay"] = float(value.get("fraction", faults.delay))
            flat["delay_max"] = float(value.get("max_seconds", faults.delay_max))
        elif key == "api_slow" and isinstance(value, dict):
            flat["api_slow"] = float(value.get("fraction", faults.api_slow))
            flat["api_slow_seconds"] = float(value.get("seconds", faults.api_slow_seconds))
        else:
            flat[key] = value
    _set_fields(faults, flat, "faults")


def _patch_limiter(limiter: Limiter, patch: dict[str, Any]) -> None:
    """{"kind": "sliding_window" | "token_bucket", "arrival_jitter_ms": {"mean": ms, "spread": ms}}."""
    flat: dict[str, Any] = {}
    for key, value in patch.items():
        if key == "arrival_jitter_ms":
            if not isinstance(value, dict) or set(value) - {"mean", "spread"}:
                raise ConfigError("limiter.arrival_jitter_ms: expected {mean, spread} in milliseconds")
            flat["jitter_mean_ms"] = float(value.get("mean", limiter.jitter_mean_ms))
            flat["jitter_spread_ms"] = float(value.get("spread", limiter.jitter_spread_ms))
            if flat["jitter_mean_ms"] < 0 or flat["jitter_spread_ms"] < 0:
                raise ConfigError("limiter.arrival_jitter_ms: mean and spread must be >= 0")
        elif key == "kind":
            if value not in LIMITER_KINDS:
                raise ConfigError(f"limiter.kind: expected one of {', '.join(LIMITER_KINDS)}")
            flat["kind"] = value
        else:
            raise ConfigError(f"limiter: unknown key {key!r}")
    _set_fields(limiter, flat, "limiter")


def _make_account(raw: dict[str, Any]) -> Account:
    try:
        account = Account(provider=raw["provider"], auth_id=str(raw["auth_id"]), auth_token=raw["auth_token"])
    except KeyError as exc:
        raise ConfigError(f"account needs provider, auth_id and auth_token (missing {exc})") from None
    if account.provider not in PROVIDERS:
        raise ConfigError(f"account {account.auth_id}: provider must be one of {', '.join(PROVIDERS)}")
    _set_fields(account, {k: v for k, v in raw.items() if k not in ("provider", "auth_id")}, "account")
    if account.callback_shape not in CALLBACK_SHAPES:
        shapes = ", ".join(CALLBACK_SHAPES)
        raise ConfigError(f"account {account.auth_id}: callback_shape must be one of {shapes}")
    _check_choices(account)
    return account


def _check_choices(account: Account) -> None:
    for name, values in ACCOUNT_CHOICES.items():
        if getattr(account, name) not in values:
            raise ConfigError(f"account {account.auth_id}: {name} must be one of {', '.join(values)}")


def _patch_accounts(config: SimConfig, patch: Any) -> None:
    """A list adds/replaces whole accounts; a dict {auth_id: {field: value}} changes fields."""
    if isinstance(patch, list):
        for raw in patch:
            account = _make_account(raw)
            config.accounts[account.auth_id] = account
        return
    if not isinstance(patch, dict):
        raise ConfigError("accounts: expected a list of accounts or {auth_id: fields}")
    for auth_id, raw in patch.items():
        if auth_id in config.accounts:
            _set_fields(config.accounts[auth_id], {k: v for k, v in raw.items() if k != "auth_id"}, auth_id)
            _check_choices(config.accounts[auth_id])
        else:
            account = _make_account({**raw, "auth_id": auth_id})
            config.accounts[account.auth_id] = account


def _seconds(entry: dict[str, Any], key: str, where: str) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}.{key}: expected a number of seconds")
    return float(value)


def parse_scheduled_faults(raw: Any, accounts: Collection[str],
                           where: str = "scheduled_faults") -> list[FaultSpec]:
    """[{"account", "fault", "start_in" (default 0), "seconds"}] as FaultSpecs; ConfigError names the field.
    Every entry must name an account of this simulator, "refused" too although it refuses every account."""
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list of {{account, fault, start_in, seconds}}")
    specs = []
    for i, entry in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: expected an object {{account, fault, start_in, seconds}}")
        unknown = sorted(set(entry) - set(FAULT_KEYS))
        if unknown:
            raise ConfigError(f"{at}: unknown key {unknown[0]!r}")
        account = entry.get("account")
        if not isinstance(account, str) or account not in accounts:
            raise ConfigError(f"{at}.account: unknown account {account!r}")
        fault = entry.get("fault")
        if isinstance(fault, int) and not isinstance(fault, bool):
            fault = str(fault)  # {"fault": 401} reads as well as "401"
        if fault not in FAULT_KINDS:
            raise ConfigError(f"{at}.fault: {fault!r} is not one of {', '.join(FAULT_KINDS)}")
        start_in = _seconds(entry, "start_in", at) if "start_in" in entry else 0.0
        if start_in < 0:
            raise ConfigError(f"{at}.start_in: must be >= 0")
        seconds = _seconds(entry, "seconds", at)
        if seconds <= 0:
            raise ConfigError(f"{at}.seconds: must be > 0")
        specs.append(FaultSpec(account, fault, start_in, seconds))
    return specs


def apply_patch(config: SimConfig, patch: dict[str, Any]) -> None:
    """Change `config` in place; raise ConfigError (nothing half-applied is guaranteed only per key)."""
    for key, value in patch.items():
        if key == "accounts":
            _patch_accounts(config, value)
        elif key == "outcomes":
            _set_fields(config.outcomes, value, "outcomes")
        elif key == "faults":
            _patch_faults(config.faults, value)
        elif key == "callbacks":
            _set_fields(config.callbacks, value, "callbacks")
        elif key == "limiter":
            if not isinstance(value, dict):
                raise ConfigError("limiter: expected an object")
            _patch_limiter(config.limiter, value)
        elif key == "keypresses":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ConfigError("keypresses: expected {number: digits}")
            config.keypresses.update(value)
        elif key == "scheduled_faults":
            # Times count from when a schedule is armed: at runtime that is its own route's job.
            raise ConfigError("scheduled_faults: at runtime use POST /_sim/faults/schedule")
        else:
            raise ConfigError(f"unknown config section {key!r}")


def load_config(source: str | Path | dict[str, Any] | None,
                limiter_default: dict[str, Any] | None = None) -> SimConfig:
    """A config from a JSON file path, a dict, or None (one default account per provider).
    `limiter_default` (the "limiter" section's shape) is applied first: the source's own "limiter" wins."""
    if source is None:
        raw: dict[str, Any] = {"accounts": DEFAULT_ACCOUNTS}
    elif isinstance(source, dict):
        raw = source
    else:
        raw = json.loads(Path(source).read_text())
    config = SimConfig()
    if limiter_default:
        _patch_limiter(config.limiter, limiter_default)
    scheduled = raw.get("scheduled_faults", [])
    apply_patch(config, {"accounts": [], **{k: v for k, v in raw.items() if k != "scheduled_faults"}})
    config.scheduled_faults = parse_scheduled_faults(scheduled, config.accounts)
    return config


def parse_jitter(text: str) -> dict[str, Any]:
    """"MEAN,SPREAD" in milliseconds (the --arrival-jitter-ms option) as a limiter section."""
    try:
        mean, spread = (float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"arrival jitter: expected MEAN,SPREAD in milliseconds, got {text!r}") from None
    return {"arrival_jitter_ms": {"mean": mean, "spread": spread}}
