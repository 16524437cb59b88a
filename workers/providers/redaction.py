"""Secrets out of carrier text before it is shortened and stored: every form a carrier may echo a secret in.

A carrier may echo a token as we sent it: plain, URL-encoded in a query string or form body, or inside the
Base64 of an HTTP Basic `username:token` header. Redaction runs on the whole text first and shortening
second, so a cut can never leave the first part of a secret that the redaction would have matched whole;
a text that still ends in the start of a secret (a carrier that cut it itself) loses that fragment too.
Pure: no settings, no I/O (workers.providers.http gathers an account's secrets).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Collection, Iterable
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
MIN_SECRET = 4  # shorter values (an empty or placeholder option) would blank ordinary words
MIN_FRAGMENT = 4  # a shorter trailing match is more likely chance than a cut secret


def secret_forms(secret: str, *, basic_usernames: Iterable[str] = ()) -> set[str]:
    """`secret` as sent, URL-encoded (quote, quote with no safe characters, quote_plus), and as the Base64
    of `username:secret` for each HTTP Basic username it travels with; empty for a too-short secret."""
    if len(secret) < MIN_SECRET:
        return set()
    forms = {secret, quote(secret), quote(secret, safe=""), quote_plus(secret)}
    for username in basic_usernames:
        if username:
            forms.add(base64.b64encode(f"{username}:{secret}".encode()).decode())
    return forms


def redact_secrets(text: str, forms: Collection[str], *, limit: int | None = None) -> str:
    """`text` with every form replaced by REDACTED, then shortened to `limit` characters, never ending in
    the start of a form. Percent-escapes match in either case (%2f and %2F), so matching ignores case:
    redacting a differently cased look-alike costs nothing."""
    forms = [form for form in forms if len(form) >= MIN_SECRET]
    if forms:
        pattern = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
        text = re.sub(pattern, REDACTED, text, flags=re.IGNORECASE)
    if limit is not None:
        text = text[:limit]
    fragment = _trailing_fragment_length(text, forms)
    if fragment:
        kept = text[: len(text) - fragment]
        if limit is not None:
            kept = kept[: max(0, limit - len(REDACTED))]
        text = kept + REDACTED
    return text


def _trailing_fragment_length(text: str, forms: Iterable[str]) -> int:
    """The length of the longest end of `text` (at least MIN_FRAGMENT) that begins some form, else 0."""
    longest = 0
    for form in forms:
        for size in range(min(len(form), len(text)), max(MIN_FRAGMENT, longest + 1) - 1, -1):
            if re.fullmatch(re.escape(form[:size]), text[len(text) - size:], flags=re.IGNORECASE):
                longest = size
                break
    return longest
