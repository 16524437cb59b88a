"""A campaign's `extra` body fields merged into a create-call body without ever replacing what the dialer
set (numbers, callback URLs, their credentials). Options are checked when configured
(campaigns.provider_options); this is the last line for rows written before that check existed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from campaigns.provider_options import protected_body_field

log = logging.getLogger(__name__)


def merge_extra(body: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`body` updated with the harmless part of `extra`; protected or already-set fields are dropped."""
    for key, value in extra.items():
        if key in body or protected_body_field(key):
            log.warning("provider option extra.%s ignored: the dialer sets it", key)
            continue
        body[key] = value
    return body
