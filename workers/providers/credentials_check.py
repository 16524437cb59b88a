"""Does the carrier take an account's credentials? One harmless authenticated request per provider (nothing
is dialed), and what its answer means, named exactly (`dialer account test`, `POST /accounts/{name}/test`).

Each provider's request and where it comes from (docs/PROVIDERS.md, "Credentials check"):

    voipbin    GET /v1.0/calls?token=…  (the call list)          page, Get call list
    plivo      GET /v1/Account/{auth_id}/Call/  (the call list)  assumed: the page documents only the create
    vobiz      GET /api/v1/Account/{auth_id}/Call/               assumed, as Plivo (the API is Plivo's)
    tryvox     GET …/calls/{made-up id}: 404 means authenticated assumed: the page documents only the create
    bandwidth  GET …/calls/{made-up id}: 404 means authenticated assumed: the page gives each call a callUrl

A lookup of a made-up call answers 404 both when the carrier authenticated the request and when the base
URL is wrong (any server answers 404 to a path it lacks): a 404 is believed only when the same lookup with a
wrong token is refused (401/403). Pure apart from `check_credentials`, which sends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal
from urllib.parse import urlsplit

import httpx

from workers.providers.base import ProviderAdapter
from workers.providers.calls import AccountCredentials
from workers.providers.errors import ProviderError
from workers.providers.http import provider_message, redact

NO_SUCH_CALL = "dialer-credentials-check-no-such-call"
WRONG_TOKEN = "dialer-credentials-check-wrong-token"
CHECK_TIMEOUT = httpx.Timeout(connect=5.0, read=10.0, write=5.0, pool=5.0)

ProbeKind = Literal["list", "lookup"]


class Verdict(StrEnum):
    """How a check came out: ok, a warning worth reading, or a problem that stops dialing."""

    OK = "ok"
    WARNING = "warning"
    PROBLEM = "problem"


@dataclass(frozen=True)
class Finding:
    """One check's result: which check, its verdict, and the one line that says what is wrong."""

    check: str
    verdict: Verdict
    message: str


@dataclass(frozen=True)
class ProbeRule:
    """Which request tests a provider's credentials, and where that choice comes from."""

    kind: ProbeKind  # list: a 2xx means accepted; lookup of a made-up call: a (confirmed) 404 does
    source: str  # "page, <its section>" or "assumed: why"


PROBE_RULES: Mapping[str, ProbeRule] = {
    "voipbin": ProbeRule("list", "page, Get call list (GET /v1.0/calls, the call list)"),
    "plivo": ProbeRule("list", "assumed: the page documents only the create call; Plivo's call list "
                               "(GET …/Call/) is the collection the create POSTs to"),
    "vobiz": ProbeRule("list", "assumed: the page documents only the create call; its API is Plivo's, "
                               "whose call list is GET …/Call/ (401 bad token, 404 unknown auth id: "
                               "its page's status codes table)"),
    "tryvox": ProbeRule("lookup", "assumed: the page documents only the create call; call_uuid is 'for "
                                  "subsequent operations' (Response Fields), so GET …/calls/{id} names one"),
    "bandwidth": ProbeRule("lookup", "assumed: the page documents only the create call; each call has a "
                                     "callUrl (Example 1 of 1, 201 answer), so GET …/calls/{id} names one"),
}

# What the provider calls the credentials a 401 refuses.
CREDENTIAL_NAMES: Mapping[str, str] = {
    "voipbin": "token",
    "tryvox": "API key (the token) or account id (--auth-id)",
    "bandwidth": "API user (--api-username) or its password (the token)",
}


def probe_rule(adapter: ProviderAdapter) -> ProbeRule:
    """The provider's rule; a provider without one is tested by a lookup if it has a status API."""
    rule = PROBE_RULES.get(adapter.traits.kind)
    if rule is not None:
        return rule
    return ProbeRule("lookup" if adapter.traits.api.has_call_status else "list",
                     "assumed: no rule for this provider; its call status lookup or call list")


def probe_request(client: httpx.Client, adapter: ProviderAdapter, account: AccountCredentials,
                  kind: ProbeKind) -> httpx.Request:
    """The GET that tests the credentials: the call list, or a lookup of a call that cannot exist."""
    if kind == "lookup":
        return adapter.status_request(client, account, NO_SUCH_CALL)
    return client.build_request("GET", adapter.calls_url(account), headers=adapter.auth_headers(account),
                                params=adapter.auth_params(account) or None)


def _is_json(response: httpx.Response) -> bool:
    try:
        response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return True


def judge_answer(account: AccountCredentials, kind: ProbeKind, response: httpx.Response,
                 control_status: int | None = None) -> Finding:
    """What the carrier's answer to the probe says of the credentials. `control_status` is the answer to
    the same lookup with a wrong token (asked only after a lookup's 404)."""
    status = response.status_code
    said = redact(provider_message(response), account)
    path = urlsplit(str(response.request.url)).path if response.request else ""  # never the query: tokens
    base, auth_id = account.base_url, account.auth_id
    creds = CREDENTIAL_NAMES.get(account.provider, "auth id (--auth-id) or token")

    def problem(message: str) -> Finding:
        return Finding("credentials", Verdict.PROBLEM, message)

    if response.is_success:
        if not _is_json(response):
            return problem(f"wrong base URL? GET {path} on {base} answered HTTP {status} but not with "
                           f"{account.provider}'s JSON")
        return Finding("credentials", Verdict.OK, f"credentials accepted: GET {path} answered HTTP {status}")
    if status == 404 and kind == "lookup":
        if control_status in (401, 403):
            return Finding("credentials", Verdict.OK,
                           "credentials accepted: a lookup of a made-up call answered 404 (no such call), "
                           f"and the same lookup with a wrong token {control_status}")
        return problem(f"wrong base URL or account id: GET {path} on {base} answers 404 whatever the "
                       f"credentials (with a wrong token: {control_status}); check --base-url and "
                       f"--auth-id {auth_id}")
    if status == 401:
        return problem(f"bad {creds}: {account.provider} refused the credentials (HTTP 401: {said}); "
                       "set the right one with `dialer account update NAME`")
    if status == 403:
        return problem(f"unknown account id or no access to it: {account.provider} refused account "
                       f"{auth_id} (HTTP 403: {said}); check --auth-id and the credentials' rights")
    if status == 404:
        return problem(f"unknown account id or wrong base URL: GET {path} on {base} answered 404 ({said}); "
                       f"check --auth-id {auth_id} and --base-url")
    if 300 <= status < 400:
        return problem(f"wrong base URL: {base} redirects (HTTP {status} to "
                       f"{response.headers.get('location')}); give the API's own address as --base-url")
    if status == 402:
        return Finding("credentials", Verdict.WARNING,
                       f"credentials accepted, but the balance is too low (HTTP 402: {said}); top it up")
    if status == 429:
        return problem(f"cannot tell: {account.provider} throttled the check (HTTP 429); try again shortly")
    if status >= 500:
        return problem(f"cannot tell: {account.provider} answered HTTP {status} ({said}); try again later")
    return problem(f"cannot tell: GET {path} answered HTTP {status} ({said})")


def transport_finding(account: AccountCredentials, exc: httpx.HTTPError) -> Finding:
    """A request that got no HTTP answer, named: refused, unresolvable, timed out."""
    base = account.base_url
    detail = redact(f"{type(exc).__name__}: {exc}", account)
    if isinstance(exc, httpx.TimeoutException):
        message = f"network: no answer from {base} in time ({detail}); wrong base URL, or a firewall drops it"
    elif isinstance(exc, httpx.ConnectError):
        message = (f"network refused: cannot connect to {base} ({detail}); check --base-url and that this "
                   "host may reach it")
    elif isinstance(exc, httpx.UnsupportedProtocol):
        message = f"wrong base URL: {base} is not an http(s) URL ({detail})"
    else:
        message = f"network: the request to {base} failed ({detail})"
    return Finding("credentials", Verdict.PROBLEM, message)


def check_credentials(client: httpx.Client, adapter: ProviderAdapter, account: AccountCredentials) -> Finding:
    """Send the provider's probe (and, after a lookup's 404, its wrong-token control) and judge it."""
    kind = probe_rule(adapter).kind
    try:
        request = probe_request(client, adapter, account, kind)
    except (ProviderError, ValueError, TypeError) as exc:  # e.g. a Bandwidth account without its API user
        message = exc.message if isinstance(exc, ProviderError) else str(exc)
        return Finding("credentials", Verdict.PROBLEM, f"cannot build the check: {redact(message, account)}")
    try:
        response = client.send(request)
        control = None
        if kind == "lookup" and response.status_code == 404:
            wrong = replace(account, auth_token=WRONG_TOKEN)
            control = client.send(probe_request(client, adapter, wrong, kind)).status_code
    except httpx.HTTPError as exc:
        return transport_finding(account, exc)
    return judge_answer(account, kind, response, control)
