"""Callback signatures as each carrier computes them (PROVIDERS.md): Plivo V2/V3, Vobiz V2/V3, VoIPbin."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import random
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

_nonces = random.Random()


def _b64_hmac(key: str, message: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()).decode()


@functools.lru_cache(maxsize=4096)
def _split(url: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    parts = urlsplit(url)
    query = tuple(parse_qsl(parts.query, keep_blank_values=True))
    return f"{parts.scheme}://{parts.netloc}{parts.path}", query


def base_url(url: str) -> str:
    """scheme://host/path of a URL: no query, no fragment."""
    return _split(url)[0]


def _sorted_query(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def plivo_v3_string(method: str, url: str, params: Mapping[str, str]) -> str:
    """The string Plivo V3 signs (before "." + nonce), per plivo.utils.validate_v3_signature."""
    base, query = _split(url)
    if method.upper() == "GET":
        merged = list(query) + [(k, str(v)) for k, v in params.items()]
        return f"{base}?{_sorted_query(merged)}" if merged else base
    out = base
    if query:
        out += "?" + _sorted_query(query)
    if params:
        body = "".join(f"{k}{params[k]}" for k in sorted(params))
        out += ("." if query else "?") + body
    return out


def plivo_v3_signature(method: str, url: str, params: Mapping[str, str], nonce: str, auth_token: str) -> str:
    return _b64_hmac(auth_token, plivo_v3_string(method, url, params) + "." + nonce)


def plivo_v2_signature(url: str, nonce: str, auth_token: str) -> str:
    return _b64_hmac(auth_token, base_url(url) + nonce)


def vobiz_v3_signature(url: str, nonce: str, auth_token: str, *, with_query: bool = False) -> str:
    """Vobiz V3 signs only the URL without its query (or, in the other reading, with it), then "." + nonce;
    POST params are not signed."""
    signed = url.split("#", 1)[0] if with_query else base_url(url)
    return _b64_hmac(auth_token, signed + "." + nonce)


def voipbin_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def new_nonce() -> str:
    """A 20-digit nonce (unique per callback; not a secret, it is sent in the clear)."""
    return str(_nonces.getrandbits(64)).zfill(20)


def plivo_headers(method: str, url: str, params: Mapping[str, str], auth_token: str) -> dict[str, str]:
    nonce = new_nonce()
    v3 = plivo_v3_signature(method, url, params, nonce, auth_token)
    return {
        "X-Plivo-Signature-V3": v3,
        "X-Plivo-Signature-Ma-V3": v3,  # the simulator has no sub-accounts: main token == token
        "X-Plivo-Signature-V3-Nonce": nonce,
    }


def vobiz_headers(url: str, auth_token: str, *, with_query: bool = False) -> dict[str, str]:
    nonce = new_nonce()
    v3 = vobiz_v3_signature(url, nonce, auth_token, with_query=with_query)
    return {
        "X-Vobiz-Signature-V3": v3,
        "X-Vobiz-Signature-MA-V3": v3,
        "X-Vobiz-Signature-V3-Nonce": nonce,
    }
