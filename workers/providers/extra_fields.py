"""A campaign's `extra` body fields merged into a create-call body without ever replacing what the dialer
set (numbers, callback URLs, their credentials), and never when, at any depth, they would connect the call on
or name a number. Options are checked when configured (campaigns.provider_options); this is the last line
for rows written before that check existed, or around it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from campaigns.provider_options import protected_body_field, redirect_in_extra
from workers.providers.errors import Refused

log = logging.getLogger(__name__)


def refuse_redirecting_extra(extra: Mapping[str, Any]) -> None:
    """Refused (nothing sent) when the campaign's `extra` would connect the call on or name a number anywhere
    inside it (a VoIPbin `connect` action): dropping that part would send a script nobody wrote."""
    redirect = redirect_in_extra(extra)
    if redirect is not None:
        raise Refused(f"provider_options.{redirect} would connect the call on or name a number, which extra "
                      "may not do; set the campaign's extra again (PATCH /campaigns/ID with "
                      "provider_options.extra)")


def merge_extra(body: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`body` updated with the harmless part of `extra`; protected or already-set fields are dropped, and an
    `extra` that would connect the call on refuses the whole request (refuse_redirecting_extra)."""
    refuse_redirecting_extra(extra)
    for key, value in extra.items():
        if key in body or protected_body_field(key):
            log.warning("provider option extra.%s ignored: the dialer sets it", key)
            continue
        body[key] = value
    return body
