"""`dialer account add` and `dialer account show` tell a new user what to set in each provider's console:
VoIPbin's per-account webhook URL (and the webhook secret to give it), and for the providers whose calls carry
their own URLs that nothing must be set, and what matters instead. Tokens never come out; the webhook
secret only on add/show. `account update --webhook-secret` changes or removes it."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from typer.testing import CliRunner

from campaigns.accounts import read_account, resolve_account_id
from workers.callbacks.urls import webhook_url
from workers.entrypoints.cli import app
from workers.providers.console_setup import CALLER_ID_RULES, PER_ACCOUNT_WEBHOOK, console_setup
from workers.providers.registry import PROVIDERS

runner = CliRunner()
TOKEN = "tok-never-printed-4711"
PER_CALL = ("plivo", "vobiz", "tryvox", "bandwidth")
LOCAL_CARRIER = "http://127.0.0.1:9"  # never a real carrier: an API fuzzer testing these accounts stays local


def _add(provider: str, *extra: str) -> tuple[str, str]:
    name = f"setup-{provider}-{uuid.uuid4().hex[:6]}"
    args = ["account", "add", name, "--provider", provider, "--auth-id", "AUTH1", "--auth-token", TOKEN,
            "--cps", "2", "--max-concurrent", "5", "--base-url", LOCAL_CARRIER, *extra]
    if provider == "bandwidth":
        args += ["--api-username", "api-user", "--application-id", "app-1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return name, result.output


def test_every_provider_has_console_setup_and_only_voipbin_needs_a_webhook() -> None:
    assert set(CALLER_ID_RULES) == set(PROVIDERS)
    assert PER_ACCOUNT_WEBHOOK == {"voipbin"}
    for provider in PER_CALL:
        setup = console_setup(provider, public_url="https://dialer.example.com")
        assert setup.nothing_to_set
        assert any("https://dialer.example.com" in note and "HTTPS" in note for note in setup.notes)
    with pytest.raises(ValueError, match="webhook URL"):
        console_setup("voipbin", public_url="https://dialer.example.com")


def test_secrets_are_shown_only_when_revealed() -> None:
    url = "https://dialer.example.com/callbacks/voipbin/7/status?s=0123456789abcdef"
    setup = console_setup("voipbin", public_url="https://dialer.example.com", webhook_url=url,
                          webhook_secret="whsec-42")
    shown = "\n".join(setup.lines(reveal_secrets=True))
    hidden = "\n".join(setup.lines(reveal_secrets=False)) + str(setup.as_dict(reveal_secrets=False))
    assert f"webhook_uri: {url}" in shown and "webhook secret: whsec-42" in shown
    assert "webhook_method: POST" in shown
    assert "0123456789abcdef" not in hidden and "whsec-42" not in hidden
    assert "https://dialer.example.com/callbacks/voipbin/7/status?s=[hidden]" in hidden


def test_account_add_prints_the_voipbin_webhook_url_to_paste(database_url: str) -> None:
    name, output = _add("voipbin")
    with psycopg.connect(database_url) as conn:
        account_id = resolve_account_id(conn, name)
    lines = output.splitlines()
    assert f"  webhook_uri: {webhook_url('voipbin', account_id)}" in lines, output
    assert "  webhook_method: POST" in lines
    assert "no webhook secret on this account" in output and f"dialer account test {name}" in output
    assert TOKEN not in output


def test_account_add_with_a_webhook_secret_prints_it_once_for_the_console(database_url: str) -> None:
    name, output = _add("voipbin", "--webhook-secret", "whsec-from-console")
    assert "  webhook secret: whsec-from-console" in output.splitlines()
    assert TOKEN not in output


@pytest.mark.parametrize("provider", PER_CALL)
def test_account_add_says_nothing_is_set_in_the_console_for_per_call_urls(
    database_url: str, provider: str
) -> None:
    _, output = _add(provider)
    assert f"{provider} console: nothing to set there" in output
    assert "caller id" in output and "over HTTPS" in output and "DIALER_PUBLIC_URL" in output
    assert "webhook_uri" not in output and TOKEN not in output


def test_account_show_prints_the_account_and_its_console_setup_but_never_its_token(database_url: str) -> None:
    name, added = _add("voipbin", "--webhook-secret", "whsec-1")
    shown = runner.invoke(app, ["account", "show", name])
    assert shown.exit_code == 0, shown.output
    webhook = next(line for line in added.splitlines() if "webhook_uri:" in line)
    assert webhook in shown.output.splitlines() and "  webhook secret: whsec-1" in shown.output
    assert "webhook secret: set" in shown.output and "auth id: AUTH1" in shown.output
    assert TOKEN not in shown.output
    missing = runner.invoke(app, ["account", "show", "no-such-account-anywhere"])
    assert missing.exit_code != 0


def test_account_update_sets_and_removes_the_webhook_secret(database_url: str) -> None:
    name, _ = _add("voipbin")
    changed = runner.invoke(app, ["account", "update", name, "--webhook-secret", "whsec-new"])
    assert changed.exit_code == 0, changed.output
    with psycopg.connect(database_url) as conn:
        assert read_account(conn, name)[1].webhook_secret == "whsec-new"
    removed = runner.invoke(app, ["account", "update", name, "--webhook-secret", ""])
    assert removed.exit_code == 0, removed.output
    with psycopg.connect(database_url) as conn:
        assert read_account(conn, name)[1].webhook_secret is None
    assert "--webhook-secret" in runner.invoke(app, ["account", "update", "--help"]).output


def test_a_vobiz_account_says_what_its_hangup_on_ring_bounds(database_url: str) -> None:
    name, _ = _add("vobiz", "--hangup-on-ring", "ring")
    with psycopg.connect(database_url) as conn:
        assert read_account(conn, name)[1].options["hangup_on_ring"] == "ring"
    changed = runner.invoke(app, ["account", "update", name, "--hangup-on-ring", "call"])
    assert changed.exit_code == 0, changed.output
    with psycopg.connect(database_url) as conn:
        assert read_account(conn, name)[1].options["hangup_on_ring"] == "call"
    wrong = runner.invoke(app, ["account", "update", name, "--hangup-on-ring", "sometimes"])
    assert wrong.exit_code != 0
    assert "hangup_on_ring" in wrong.output + str(wrong.exception)
