"""Callback signature algorithms (Plivo V3/V2, Vobiz V3/V2, VoIPbin HMAC, HTTP Basic) and our URL secrets.

Every comparison is constant-time. Nonce reuse (replay) is the callback API's job: these functions only say
whether a signature is right. All are pure apart from `callback_url_secret`, which reads DIALER_SECRET_KEY.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit

from campaigns.config import get_settings

ParamValue = str | Sequence[str]
BANDWIDTH_CALLBACK_USERNAME = "dialer"


def _hmac_sha256(key: str, message: str) -> bytes:
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def base_url(url: str) -> str:
    """scheme://host/path of a URL: no query, no fragment."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _values(value: ParamValue) -> list[str]:
    return sorted([value] if isinstance(value, str) else [str(v) for v in value])


def _sorted_query(params: Mapping[str, ParamValue]) -> str:
    return "&".join(f"{key}={val}" for key in sorted(params) for val in _values(params[key]))


def _sorted_concat(params: Mapping[str, ParamValue]) -> str:
    return "".join(f"{key}{val}" for key in sorted(params) for val in _values(params[key]))


def _query_params(url: str) -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for key, val in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        merged.setdefault(key, []).append(val)
    return merged


def plivo_v3_string(method: str, url: str, params: Mapping[str, ParamValue]) -> str:
    """The string Plivo V3 signs (before '.' + nonce), as the official SDK builds it."""
    base = base_url(url)
    query = _query_params(url)
    if method.upper() == "GET":
        merged: dict[str, ParamValue] = {**query, **params}
        sorted_query = _sorted_query(merged)
        return f"{base}?{sorted_query}" if sorted_query else base
    sorted_query = _sorted_query(query)
    if not params:
        return f"{base}?{sorted_query}" if sorted_query else base
    return f"{base}?{sorted_query}{'.' if sorted_query else ''}{_sorted_concat(params)}"


def plivo_v3_signature(
    auth_token: str, method: str, url: str, nonce: str, params: Mapping[str, ParamValue]
) -> str:
    """base64(HMAC-SHA256(token, plivo_v3_string + '.' + nonce))."""
    return _b64(_hmac_sha256(auth_token, f"{plivo_v3_string(method, url, params)}.{nonce}"))


def plivo_v2_signature(auth_token: str, url: str, nonce: str) -> str:
    """Legacy V2: base64(HMAC-SHA256(token, scheme://host/path + nonce)); Vobiz V2 is the same."""
    return _b64(_hmac_sha256(auth_token, base_url(url) + nonce))


def vobiz_v3_signature(auth_token: str, url: str, nonce: str) -> str:
    """Vobiz V3: base64(HMAC-SHA256(token, url-without-query + '.' + nonce)); params are not signed."""
    return _b64(_hmac_sha256(auth_token, f"{base_url(url)}.{nonce}"))


def voipbin_signature(webhook_secret: str, body: bytes) -> str:
    """The X-VoIPBIN-Signature header value: 'sha256=' + hex HMAC-SHA256(secret, raw body)."""
    return "sha256=" + hmac.new(webhook_secret.encode(), body, hashlib.sha256).hexdigest()


def constant_time_equal(given: str | None, expected: str) -> bool:
    """hmac.compare_digest on UTF-8 bytes; a missing value never matches."""
    if given is None or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def any_signature_matches(header: str | None, expected: str) -> bool:
    """True when any of the comma-separated signatures in `header` equals `expected` (constant time each)."""
    if not header:
        return False
    found = False
    for candidate in header.split(","):
        found |= constant_time_equal(candidate.strip(), expected)  # no early exit: same work for every entry
    return found


def basic_auth_header(username: str, password: str) -> str:
    """The Authorization header value for HTTP Basic."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def basic_auth_matches(authorization: str | None, username: str, password: str) -> bool:
    """True when an Authorization header carries exactly these Basic credentials."""
    return constant_time_equal(authorization, basic_auth_header(username, password))


def callback_url_secret(account_id: int) -> str:
    """The account's secret in our callback URLs: hex HMAC-SHA256(DIALER_SECRET_KEY, 'callback:{id}')[:32]."""
    key = get_settings().secret_key
    return hmac.new(key.encode(), f"callback:{account_id}".encode(), hashlib.sha256).hexdigest()[:32]


def bandwidth_callback_credentials(account_id: int) -> tuple[str, str]:
    """The Basic username/password we give Bandwidth per call and expect back on its callbacks."""
    return BANDWIDTH_CALLBACK_USERNAME, callback_url_secret(account_id)


def first_header(headers: Mapping[str, str], names: Iterable[str]) -> str | None:
    """The first present header among `names` (lower-case), else None."""
    for name in names:
        value = headers.get(name)
        if value:
            return value
    return None
