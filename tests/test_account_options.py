"""Provider accounts carry what their seeds require: Bandwidth an API user (never the account id) and its
Voice application; Plivo/Vobiz optionally the console time zone of their callback times."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from typer.testing import CliRunner

from campaigns.accounts import list_accounts
from workers.entrypoints.cli import app
from workers.providers.account_options import check_account_options
from workers.providers.registry import adapter_for

runner = CliRunner()


@pytest.mark.parametrize(("provider", "options", "error"), [
    ("bandwidth", {"application_id": "app"}, "api_username"),
    ("bandwidth", {"api_username": "api-user"}, "application_id"),
    ("bandwidth", {"api_username": " ", "application_id": "app"}, "api_username"),
    ("plivo", {"time_zone": "Mars/Olympus"}, "IANA"),
    ("tryvox", {"time_zone": "UTC"}, "callback times are local"),
])
def test_account_options_the_seeds_require_are_checked(provider: str, options: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        check_account_options(adapter_for(provider).traits, options)


@pytest.mark.parametrize(("provider", "options"), [
    ("bandwidth", {"api_username": "api-user", "application_id": "app"}),
    ("plivo", {}),
    ("vobiz", {"time_zone": "Asia/Kolkata"}),
    ("voipbin", {}),
])
def test_account_options_that_are_complete_pass(provider: str, options: dict) -> None:
    check_account_options(adapter_for(provider).traits, options)


def test_dialer_account_add_bandwidth_takes_the_api_user(database_url: str) -> None:
    name = f"bw-{uuid.uuid4().hex[:6]}"
    base = ["account", "add", name, "--provider", "bandwidth", "--auth-id", "55555555", "--auth-token", "pw",
            "--cps", "5", "--max-concurrent", "10"]
    refused = runner.invoke(app, base)
    assert refused.exit_code != 0 and "api_username" in refused.output + str(refused.exception)
    added = runner.invoke(app, [*base, "--api-username", "api-user", "--application-id", "app-1"])
    assert added.exit_code == 0, added.output
    with psycopg.connect(database_url) as conn:
        (account,) = [a for a in list_accounts(conn) if a.name == name]
    assert account.auth_id == "55555555"
    assert account.options == {"api_username": "api-user", "application_id": "app-1"}
    zoned = runner.invoke(app, ["account", "add", f"pl-{name}", "--provider", "plivo", "--auth-id", "MA1",
                                "--auth-token", "pw", "--cps", "2", "--max-concurrent", "10",
                                "--time-zone", "Asia/Kolkata"])
    assert zoned.exit_code == 0, zoned.output
