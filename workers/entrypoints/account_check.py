"""`dialer account test NAME` and `POST /accounts/{name}/test`: the account's credentials checked with one
harmless authenticated request (workers.providers.credentials_check), DIALER_PUBLIC_URL checked as far as
it can be from here (workers.callbacks.public_url_check), and the console setup the provider needs. Nothing
is dialed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import psycopg

from campaigns.accounts import read_account
from campaigns.config import get_settings
from workers.callbacks.account_setup import account_console_setup
from workers.callbacks.public_url_check import public_url_findings, reach_own_health
from workers.providers.console_setup import ConsoleSetup
from workers.providers.credentials_check import (
    CHECK_TIMEOUT,
    Finding,
    Verdict,
    check_credentials,
    probe_rule,
)
from workers.providers.http import client_options
from workers.providers.registry import adapter_for


@dataclass(frozen=True)
class AccountCheck:
    """Every finding about one account, the request that tested its credentials, and its console setup."""

    name: str
    provider: str
    probe_source: str
    findings: tuple[Finding, ...]
    console: ConsoleSetup

    @property
    def ok(self) -> bool:
        return all(f.verdict != Verdict.PROBLEM for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        """The API's answer: never a secret (the console setup's are hidden)."""
        return {
            "account": self.name, "provider": self.provider, "ok": self.ok, "probe_source": self.probe_source,
            "findings": [{"check": f.check, "verdict": f.verdict.value, "message": f.message}
                         for f in self.findings],
            "console_setup": self.console.as_dict(reveal_secrets=False),
        }


def check_account(conn: psycopg.Connection, name_or_id: str | int,
                  transport: httpx.BaseTransport | None = None) -> AccountCheck:
    """Check one account now (NotFound if there is none)."""
    name, account = read_account(conn, name_or_id)
    adapter = adapter_for(account.provider)
    settings = get_settings()
    # A carrier client (workers.providers.http), with the check's own, more patient connect timeout.
    with httpx.Client(transport=transport, **{**client_options(), "timeout": CHECK_TIMEOUT}) as client:
        credentials = check_credentials(client, adapter, account)
        public = public_url_findings(settings.public_url, environment=settings.environment,
                                     carrier_base_url=account.base_url)
        if not any(f.verdict == Verdict.PROBLEM for f in public):
            public.append(reach_own_health(client, settings.public_url))
    return AccountCheck(
        name=name, provider=account.provider, probe_source=probe_rule(adapter).source,
        findings=(credentials, *public),
        console=account_console_setup(account.provider, account.account_id, account.webhook_secret),
    )
