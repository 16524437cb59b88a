"""What an operator must set in each provider's own console for our callbacks to arrive, and what matters
even where nothing must be set: one place the CLI (`dialer account add|show`), the demo and the API read.

Pure: the callback URL and secret are handed in (workers.callbacks.account_setup builds them). VoIPbin
sends every call event of a customer to one webhook configured per customer (`webhook_uri`,
`webhook_method`); its page (VoIPbin's Call tutorial) documents no API that sets it, so we print it for
the operator to paste rather than register it. Every other provider takes its callback URLs with each call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Providers whose callbacks go to one URL set per account in their console, not sent with each call.
PER_ACCOUNT_WEBHOOK = frozenset({"voipbin"})
HIDDEN = "[hidden: `dialer account show NAME` prints it]"

# What the provider's page says the caller id must be (each call's `from`).
CALLER_ID_RULES: Mapping[str, str] = {
    "plivo": "the caller id (`dialer campaign set --caller-id`) must be a number on your Plivo account or a "
             "caller id Plivo has verified",
    "vobiz": "the caller id must be a number on your Vobiz account (its page, Required Parameters: `from`, "
             "the caller ID)",
    "tryvox": "the caller id must be a number you own or have verified in TryVox (its page, Request "
              "Parameters: `from`, and Notes)",
    "voipbin": "the caller id must be a number you own in VoIPbin (its Call tutorial, Prerequisites: see "
               "GET /numbers)",
    "bandwidth": "the caller id must be a Bandwidth number on the account (its page, Supported Parameters: "
                 "`from`); --application-id must be the Voice application's id (`applicationId`) and "
                 "--api-username an API user with Voice access",
}


@dataclass(frozen=True)
class ConsoleField:
    """One value to set in the provider's console. `hidden` is what to show where secrets must not be (the
    API), None when the value is no secret."""

    name: str
    value: str
    hidden: str | None = None

    def shown(self, *, reveal_secrets: bool) -> str:
        return self.value if reveal_secrets or self.hidden is None else self.hidden


@dataclass(frozen=True)
class ConsoleSetup:
    """A provider account's console setup: the fields to set there (none for most providers) and notes."""

    provider: str
    fields: tuple[ConsoleField, ...]
    notes: tuple[str, ...]

    @property
    def nothing_to_set(self) -> bool:
        return not self.fields

    def lines(self, *, reveal_secrets: bool) -> list[str]:
        """The setup as lines to print: what to set (or that nothing must be), then what matters."""
        name = self.provider
        if self.nothing_to_set:
            head = [f"{name} console: nothing to set there; every call carries its own callback URLs "
                    f"(built from DIALER_PUBLIC_URL)."]
        else:
            head = [f"{name} console: set these for this account (its page documents no API that sets them):"]
            head += [f"  {f.name}: {f.shown(reveal_secrets=reveal_secrets)}" for f in self.fields]
        return head + [f"- {note}" for note in self.notes]

    def as_dict(self, *, reveal_secrets: bool) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "nothing_to_set": self.nothing_to_set,
            "fields": [{"name": f.name, "value": f.shown(reveal_secrets=reveal_secrets)}
                       for f in self.fields],
            "notes": list(self.notes),
        }


def _hide_query(url: str) -> str:
    """The URL with its query (our URL secret) hidden."""
    base, sep, _ = url.partition("?")
    return f"{base}?s=[hidden]" if sep else base


def console_setup(provider: str, *, public_url: str, webhook_url: str | None = None,
                  webhook_secret: str | None = None) -> ConsoleSetup:
    """The console setup of an account of `provider`; `webhook_url` is required where the provider's
    callbacks go to one per-account URL (PER_ACCOUNT_WEBHOOK)."""
    notes: list[str] = []
    fields: tuple[ConsoleField, ...] = ()
    if provider in PER_ACCOUNT_WEBHOOK:
        if webhook_url is None:
            raise ValueError(f"{provider} needs the account's webhook URL")
        fields = (ConsoleField("webhook_uri", webhook_url, _hide_query(webhook_url)),
                  ConsoleField("webhook_method", "POST"))
        if webhook_secret:
            fields += (ConsoleField("webhook secret", webhook_secret, HIDDEN),)
            notes.append("VoIPbin signs every webhook body with that secret (X-VoIPBIN-Signature); one "
                         "without a valid signature is refused")
        else:
            notes.append("no webhook secret on this account: webhooks are authenticated by the s= in the "
                         "URL. To have VoIPbin sign each body, set a webhook secret in its console and "
                         "give it to `dialer account update NAME --webhook-secret`")
        notes.append("without this webhook no outcome ever arrives: calls stay `dialing` until their "
                     "evidence window closes")
        notes.append("the URL is built from DIALER_PUBLIC_URL: if that changes, run "
                     "`dialer account show NAME` and set the new one")
    rule = CALLER_ID_RULES.get(provider)
    if rule:
        notes.append(rule)
    notes.append(f"the carrier must reach DIALER_PUBLIC_URL ({public_url}) over HTTPS; "
                 "`dialer account test NAME` checks the credentials and what can be told of that from here")
    return ConsoleSetup(provider=provider, fields=fields, notes=tuple(notes))
