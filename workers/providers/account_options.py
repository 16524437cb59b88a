"""The provider-specific options an account must or may carry, checked when it is added or updated (pure).

Each adapter declares them in its traits (`accounts`): Bandwidth authenticates API calls with an API user's
username and password ("Dashboard API Credentials", Bandwidth's Create Call page, Basic Authentication), never
the account id, so it requires `api_username` (the token is that user's password) and its Voice
`application_id` (Supported Parameters: `applicationId`). Plivo and Vobiz write callback times in the
console's local time zone (Plivo's Make a call page, hangup_url parameters, Vobiz's Make an Outbound Call
page, Parameters Sent to hangup_url): their accounts may say which (`time_zone`, an IANA name; UTC when
absent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workers.providers.traits import ProviderTraits


def check_account_options(
    traits: ProviderTraits, options: Mapping[str, Any], *, partial: bool = False
) -> None:
    """ValueError naming what is missing or wrong. `partial`: an update, checking only the keys given."""
    kind = traits.kind
    for key, what in traits.accounts.required_options.items():
        given = str(options.get(key) or "").strip()
        if not given and (key in options or not partial):
            raise ValueError(f"a {kind} account needs options.{key}: {what}")
    for key, values in traits.accounts.choices.items():
        if key in options and options[key] not in values:
            raise ValueError(f"options.{key} of a {kind} account is one of {', '.join(values)}")
    zone = options.get("time_zone")
    if zone is not None:
        if not traits.accounts.local_callback_times:
            raise ValueError(f"options.time_zone applies where callback times are local, not to {kind}")
        try:
            ZoneInfo(str(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"options.time_zone {zone!r} is not an IANA zone (e.g. Asia/Kolkata)") from None
