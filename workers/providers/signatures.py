"""Callback signature algorithms (Plivo V3/V2, Vobiz V3/V2, VoIPbin HMAC, HTTP Basic) and our URL secrets.

Every comparison is constant-time. Nonce reuse (replay) is the callback API's job: these functions only say
whether a signature is right. The per-account secrets at the end derive from DIALER_SECRET_KEY
(campaigns.keys).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit

from campaigns.keys import Purpose, all_keys, current_key, secrets_newest_first

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


def vobiz_v3_signature(auth_token: str, url: str, nonce: str, *, with_query: bool = False) -> str:
    """Vobiz V3: base64(HMAC-SHA256(token, url-without-query + '.' + nonce)); params are not signed.
    Its page does not say whether the query is left out (the project brief's provider reference says so):
    `with_query` computes the other reading, the URL with its query (never its fragment)."""
    signed = url.split("#", 1)[0] if with_query else base_url(url)
    return _b64(_hmac_sha256(auth_token, f"{signed}.{nonce}"))


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


def _account_mac(key: bytes, label: str, account_id: int) -> str:
    return hmac.new(key, f"{label}:{account_id}".encode(), hashlib.sha256).hexdigest()[:32]


def _legacy_secret(secret: str, account_id: int) -> str:
    """What releases before per-purpose keys used for both the URL secret and the Bandwidth password:
    accepted so the calls in flight across the upgrade keep their callbacks, never issued."""
    return hmac.new(secret.encode(), f"callback:{account_id}".encode(), hashlib.sha256).hexdigest()[:32]


def callback_url_secret(account_id: int) -> str:
    """The account's secret in our callback URLs: HMAC(callback-URL key, 'callback:{id}'), 32 hex."""
    return _account_mac(current_key(Purpose.CALLBACK_URL), "callback", account_id)


def _accepted(purpose: Purpose, label: str, account_id: int) -> list[str]:
    """Every value still accepted for an account: current key, previous secrets' keys, the legacy form."""
    derived = [_account_mac(key, label, account_id) for key in all_keys(purpose)]
    return derived + [_legacy_secret(secret, account_id) for secret in secrets_newest_first()]


def url_secret_matches(account_id: int, given: str | None) -> bool:
    """True when `given` is the account's URL secret under the current or a previous secret key."""
    found = False
    for candidate in _accepted(Purpose.CALLBACK_URL, "callback", account_id):
        found |= constant_time_equal(given, candidate)
    return found


def bandwidth_callback_credentials(account_id: int) -> tuple[str, str]:
    """The Basic username/password we give Bandwidth per call and expect back on its callbacks (a key of
    its own: the password is visible in Bandwidth's console, the URL secret in every carrier's logs)."""
    return BANDWIDTH_CALLBACK_USERNAME, _account_mac(
        current_key(Purpose.BANDWIDTH_CALLBACK), "bandwidth", account_id)


def bandwidth_auth_matches(account_id: int, authorization: str | None) -> bool:
    """True when the callback's Basic credentials are the account's, under any accepted key."""
    found = False
    for password in _accepted(Purpose.BANDWIDTH_CALLBACK, "bandwidth", account_id):
        found |= basic_auth_matches(authorization, BANDWIDTH_CALLBACK_USERNAME, password)
    return found


def first_header(headers: Mapping[str, str], names: Iterable[str]) -> str | None:
    """The first present header among `names` (lower-case), else None."""
    for name in names:
        value = headers.get(name)
        if value:
            return value
    return None
