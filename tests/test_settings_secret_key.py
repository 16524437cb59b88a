"""The secret key behind every callback secret and token: production never runs on the published
development key or a short one, and says so in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from campaigns.config import DEVELOPMENT_SECRET, Settings, settings_error_line
from tests.engine_harness import REPO

STRONG = "k" * 40


def _settings(**env: str) -> Settings:
    return Settings(_env_file=None, **env)  # type: ignore[call-arg,arg-type]


def test_production_without_a_secret_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIALER_SECRET_KEY", raising=False)
    monkeypatch.setenv("DIALER_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="DIALER_SECRET_KEY must be a secret of your own"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_production_with_the_development_key_spelled_out_is_refused() -> None:
    with pytest.raises(ValidationError, match="must be a secret of your own"):
        _settings(environment="production", secret_key=DEVELOPMENT_SECRET)


@pytest.mark.parametrize("environment", ["production", "development", "staging"])
def test_a_short_secret_key_is_refused_everywhere(environment: str) -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        _settings(environment=environment, secret_key="short-key")


def test_a_long_key_in_production_and_the_default_in_development_are_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DIALER_SECRET_KEY", raising=False)
    assert _settings(environment="production", secret_key=STRONG).secret_key == STRONG
    assert _settings(environment="development").secret_key == DEVELOPMENT_SECRET


def test_production_refuses_the_development_key_among_the_previous_keys_naming_its_position() -> None:
    # A deployment that started on the default and rotated as documented lists the published key here;
    # everything derived from it (URL secrets, Bandwidth passwords, tickets) would still be accepted.
    previous = f"{'p' * 40},{DEVELOPMENT_SECRET}"
    with pytest.raises(ValidationError) as caught:
        _settings(environment="production", secret_key=STRONG, previous_secret_keys=previous)
    message = settings_error_line(caught.value)  # the one line an operator (and the log) sees
    assert "DIALER_PREVIOUS_SECRET_KEYS entry 2 of 2 must be a secret of your own" in message
    assert DEVELOPMENT_SECRET not in message
    # The same list without the published key passes: the rule refuses that entry, not rotation.
    assert _settings(environment="production", secret_key=STRONG,
                     previous_secret_keys="p" * 40).previous_secrets == ["p" * 40]


@pytest.mark.parametrize("environment", ["production", "development"])
def test_a_short_previous_key_is_refused_naming_its_position_not_its_value(environment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(environment=environment, secret_key=STRONG, previous_secret_keys="old-short-key")
    message = settings_error_line(caught.value)  # the one line an operator (and the log) sees
    assert "DIALER_PREVIOUS_SECRET_KEYS entry 1 of 1 is 13 characters; at least 32" in message
    assert "old-short-key" not in message
    # A key of exactly the minimum passes, and development may still list the development key (its own).
    assert _settings(environment=environment, secret_key=STRONG,
                     previous_secret_keys="q" * 32).previous_secrets == ["q" * 32]
    assert _settings(environment="development", secret_key=STRONG,
                     previous_secret_keys=DEVELOPMENT_SECRET).previous_secrets == [DEVELOPMENT_SECRET]


def test_a_process_started_in_production_without_a_key_exits_with_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DIALER_SECRET_KEY"}
    env["DIALER_ENVIRONMENT"] = "production"
    out = subprocess.run([sys.executable, "-c", "from campaigns.config import get_settings; get_settings()"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "DIALER_SECRET_KEY must be a secret of your own when DIALER_ENVIRONMENT=production" in lines[0]
