"""What the request guard asks of each request before its body is read: pure decisions, no I/O.

    path                                      API key   body cap                           read deadline
    /callbacks/…                              no        the receiver's own (64 KiB,        flat
                                                        counted as callbacks_oversized)
    /health…, /metrics, /docs…, /redoc,       no        DIALER_MAX_JSON_BYTES              flat
    /openapi.json, /ui… (OPEN_PREFIXES)
    POST /campaigns, POST /dnc/import         operator  DIALER_MAX_UPLOAD_BYTES            grows with bytes
    the console's uploads (POST /ui/…)        no        DIALER_MAX_UPLOAD_BYTES            grows with bytes
    anything else (an unknown path included)  yes       DIALER_MAX_JSON_BYTES              flat

Flat: the whole body within DIALER_BODY_READ_TIMEOUT_S of the first read. An upload gets one second more per
DIALER_MIN_UPLOAD_BYTES_PER_S received, so a large CSV on a slow link still arrives while a drip does not.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.api_keys import Role
from campaigns.config import Settings

# Paths that carry no API key, each with what authenticates it instead (prefixes match whole segments).
OPEN_PREFIXES: dict[str, str] = {
    "/callbacks": "the carrier's signature, credentials or URL ticket, checked by the receiver",
    "/health": "nothing: liveness and readiness for orchestrators",
    "/metrics": "its own rule, in its route",
    "/docs": "nothing: the API's documentation",
    "/redoc": "nothing: the API's documentation",
    "/openapi.json": "nothing: the API's documentation",
    "/ui": "the operator console's session cookie, checked by its routes",
}
CALLBACKS = "/callbacks"
# Routes that take a CSV, the console's included (it checks its session before it reads the form).
UPLOADS = frozenset({("POST", "/campaigns"), ("POST", "/dnc/import"), ("POST", "/ui/campaigns/new"),
                     ("POST", "/ui/campaigns/preview"), ("POST", "/ui/dnc/import")})


@dataclass(frozen=True)
class BodyRule:
    """What one request must show before its handler reads its body."""

    needs_api_key: bool
    cap: int | None  # bytes; None: the route reads under its own cap (callbacks, where refusals are counted)
    cap_setting: str  # the variable a 413 names
    min_bytes_per_s: int | None  # an upload's rate that extends its read deadline; None: a flat deadline
    # The least role that may send this body at all: an API upload is an operator's, so a viewer's key is
    # refused before megabytes are read for a 403 the route would give anyway. None: the route decides.
    min_role: Role | None = None


def open_prefix(path: str) -> str | None:
    """The OPEN_PREFIXES entry that `path` falls under, or None."""
    for prefix in OPEN_PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return prefix
    return None


def rule_for(method: str, path: str, settings: Settings) -> BodyRule:
    """The rule for one request line."""
    prefix = open_prefix(path)
    if prefix == CALLBACKS:
        return BodyRule(needs_api_key=False, cap=None, cap_setting="DIALER_MAX_CALLBACK_BYTES",
                        min_bytes_per_s=None)
    if (method, path.rstrip("/")) in UPLOADS:
        return BodyRule(needs_api_key=prefix is None, cap=settings.max_upload_bytes,
                        cap_setting="DIALER_MAX_UPLOAD_BYTES",
                        min_bytes_per_s=settings.min_upload_bytes_per_s,
                        min_role=Role.OPERATOR if prefix is None else None)
    return BodyRule(needs_api_key=prefix is None, cap=settings.max_json_bytes,
                    cap_setting="DIALER_MAX_JSON_BYTES", min_bytes_per_s=None)


def declared_over(content_length: str | None, cap: int | None) -> bool:
    """Whether a declared Content-Length is over the cap (one that is not a number counts as over)."""
    if cap is None or content_length is None:
        return False
    return not content_length.isdigit() or int(content_length) > cap


def read_deadline(first_read_at: float, received: int, rule: BodyRule, timeout_s: float) -> float:
    """When the rest of the body must have arrived by, `received` bytes into it."""
    extension = received / rule.min_bytes_per_s if rule.min_bytes_per_s else 0.0
    return first_read_at + timeout_s + extension
