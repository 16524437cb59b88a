"""The provider-specific options an account must or may carry, checked when it is added or updated (pure).

- Bandwidth authenticates API calls with an API user's username and password ("Dashboard API Credentials",
  bandwidth-create-call.txt l.9-11), never with the account id: `api_username` is required (the token is
  that user's password), and so is the Voice `application_id` (l.19).
- Plivo and Vobiz write callback times in the console's local time zone (plivo-make-call.txt l.95-98,
  vobiz-make-call.txt l.104-107): `time_zone` is that zone's IANA name; UTC when absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

REQUIRED_OPTIONS: dict[str, dict[str, str]] = {
    "bandwidth": {
        "api_username": "the API user's username (--api-username); Bandwidth refuses the account id",
        "application_id": "the Voice application id (--application-id)",
    },
}
ZONED_PROVIDERS = frozenset({"plivo", "vobiz"})


def check_account_options(provider: str, options: Mapping[str, Any], *, partial: bool = False) -> None:
    """ValueError naming what is missing or wrong. `partial`: an update, checking only the keys given."""
    if not partial:
        for key, what in REQUIRED_OPTIONS.get(provider, {}).items():
            if not str(options.get(key) or "").strip():
                raise ValueError(f"a {provider} account needs options.{key}: {what}")
    for key in REQUIRED_OPTIONS.get(provider, {}):
        if key in options and not str(options.get(key) or "").strip():
            raise ValueError(f"options.{key} of a {provider} account cannot be empty")
    zone = options.get("time_zone")
    if zone is not None:
        if provider not in ZONED_PROVIDERS:
            raise ValueError(f"options.time_zone applies to plivo and vobiz accounts, not {provider}")
        try:
            ZoneInfo(str(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"options.time_zone {zone!r} is not an IANA zone (e.g. Asia/Kolkata)") from None
