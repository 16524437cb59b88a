"""Can the carrier call us back at DIALER_PUBLIC_URL? What can be told from here: the URL itself (a loopback,
private or `.local` host no carrier on the internet reaches; plain http outside development), and whether it
answers our own /health from this host. Whether the internet reaches it cannot be told from inside.

A carrier on this machine or network (the simulator: an account whose base URL is itself local) reaches a
local public URL, so that is fine there. Pure apart from `reach_own_health`.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import httpx

from workers.providers.credentials_check import Finding, Verdict

HEALTH_TIMEOUT = httpx.Timeout(5.0)
LOCAL_SUFFIXES = (".local", ".localhost", ".internal", ".lan", ".home.arpa")


def local_host_reason(host: str) -> str | None:
    """Why no carrier on the internet reaches `host`, or None when it may."""
    name = host.strip("[]").lower().rstrip(".")
    if not name:
        return "has no host"
    if name == "localhost" or name.endswith(LOCAL_SUFFIXES):
        return f"a local name ({name})"
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return None if "." in name else f"a single-label name ({name}) only this network resolves"
    if address.is_loopback:
        return f"a loopback address ({name})"
    if address.is_unspecified:
        return f"the unspecified address ({name})"
    if address.is_link_local:
        return f"a link-local address ({name})"
    if address.is_private or (isinstance(address, ipaddress.IPv4Address)
                              and address in ipaddress.IPv4Network("100.64.0.0/10")):
        return f"a private address ({name})"
    return None


def public_url_findings(public_url: str, *, environment: str, carrier_base_url: str) -> list[Finding]:
    """What is wrong with the public URL as an address the carrier calls back, without any request."""
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [Finding("public_url", Verdict.PROBLEM,
                        f"DIALER_PUBLIC_URL {public_url!r} is not an http(s) URL with a host")]
    carrier_local = local_host_reason(urlsplit(carrier_base_url).hostname or "") is not None
    findings: list[Finding] = []
    reason = local_host_reason(parts.hostname)
    if reason and carrier_local:
        findings.append(Finding("public_url", Verdict.OK,
                                f"DIALER_PUBLIC_URL {public_url} is {reason}; fine only because the carrier "
                                f"({carrier_base_url}) is local too (a simulator)"))
    elif reason:
        findings.append(Finding("public_url", Verdict.PROBLEM,
                                f"public URL not reachable by the carrier: DIALER_PUBLIC_URL {public_url} is "
                                f"{reason}; set it to the https:// address the internet reaches "
                                "`dialer api` at"))
    if parts.scheme == "http" and not carrier_local:
        production = environment != "development"
        findings.append(Finding("public_url", Verdict.PROBLEM if production else Verdict.WARNING,
                                f"DIALER_PUBLIC_URL {public_url} is plain http"
                                + (f" in {environment}" if production else "")
                                + ": callbacks and their URL secrets would cross the internet unencrypted, "
                                  "and carriers expect https; use an https:// address"))
    return findings


def reach_own_health(client: httpx.Client, public_url: str) -> Finding:
    """Does `{public_url}/health` answer as our API does, from this host?"""
    url = f"{public_url}/health"
    try:
        response = client.get(url, timeout=HEALTH_TIMEOUT)
    except httpx.HTTPError as exc:
        return Finding("public_url", Verdict.PROBLEM,
                       f"public URL not reachable from here: GET {url} failed ({type(exc).__name__}: {exc}); "
                       "is `dialer api` running there, and does DIALER_PUBLIC_URL point at it?")
    try:
        ours = response.status_code == 200 and response.json() == {"status": "ok"}
    except ValueError:
        ours = False
    if not ours:
        return Finding("public_url", Verdict.PROBLEM,
                       f"public URL answers, but not as the dialer's API: GET {url} gave HTTP "
                       f"{response.status_code}; does DIALER_PUBLIC_URL point at `dialer api`?")
    return Finding("public_url", Verdict.OK,
                   f"GET {url} answered from this host (whether the carrier reaches it from the internet "
                   "cannot be told from here)")
