"""An account's console setup with its real callback URL and secret (workers.providers.console_setup is the
pure part): what `dialer account add|show`, the demo and the API print."""

from __future__ import annotations

from campaigns.config import get_settings
from workers.callbacks.urls import webhook_url
from workers.providers.console_setup import PER_ACCOUNT_WEBHOOK, ConsoleSetup, console_setup


def account_console_setup(provider: str, account_id: int, webhook_secret: str | None) -> ConsoleSetup:
    """What the operator must set in the provider's console for this account (built from
    DIALER_PUBLIC_URL as this process sees it)."""
    url = webhook_url(provider, account_id) if provider in PER_ACCOUNT_WEBHOOK else None
    return console_setup(provider, public_url=get_settings().public_url, webhook_url=url,
                         webhook_secret=webhook_secret)
