"""Start-up fails closed (issue 20, design point "start-up fails open"): a process whose environment does not
say DIALER_ENVIRONMENT=development is production, and refuses the published development key (as the key or
among the previous keys) and a short key with one line naming the setting and the fix. Each process runs
with a clean environment (no DIALER_ variable but those given) in a directory with no `.env`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from campaigns.config import DEVELOPMENT_SECRET
from workers.entrypoints.local_stack import free_port

DIALER = str(Path(sys.executable).parent / "dialer")
STRONG = "s" * 40


def _clean_env(**dialer: str) -> dict[str, str]:
    """PATH, HOME and PYTHONPATH, this session's stores (so a process that starts finds them), and the given
    DIALER_* variables."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "PYTHONPATH") if k in os.environ}
    for name in ("DIALER_DATABASE_URL", "DIALER_REDIS_URL", "DIALER_REDIS_PREFIX"):
        env[name] = os.environ[name]
    env.update({f"DIALER_{k.upper()}": v for k, v in dialer.items()})
    return env


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DIALER, *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=90)


def _refusal_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("argv", [["campaign", "list"], ["api", "--port", "1"], ["worker"], ["beat"]],
                         ids=["cli", "api", "worker", "beat"])
def test_every_process_without_an_environment_refuses_the_development_key(
    argv: list[str], tmp_path: Path
) -> None:
    line = _refusal_line(_run(argv, _clean_env(), tmp_path))
    assert ("DIALER_SECRET_KEY must be a secret of your own when DIALER_ENVIRONMENT is unset "
            "(so production), not the published development key") in line
    assert "secrets.token_urlsafe" in line
    assert "DIALER_ENVIRONMENT=development on a development machine" in line


@pytest.mark.parametrize(("given", "expected"), [
    ({"secret_key": DEVELOPMENT_SECRET},
     "DIALER_SECRET_KEY must be a secret of your own when DIALER_ENVIRONMENT is unset (so production)"),
    ({"secret_key": "short-but-mine"}, "DIALER_SECRET_KEY is 14 characters; at least 32 are needed"),
    ({"secret_key": STRONG, "previous_secret_keys": f"{'p' * 40},{DEVELOPMENT_SECRET}"},
     "DIALER_PREVIOUS_SECRET_KEYS entry 2 of 2 must be a secret of your own when DIALER_ENVIRONMENT is"),
    ({"secret_key": STRONG, "previous_secret_keys": "old-short"},
     "DIALER_PREVIOUS_SECRET_KEYS entry 1 of 1 is 9 characters; at least 32 are needed"),
], ids=["development key spelled out", "short key", "development key among previous", "short previous key"])
def test_without_an_environment_a_weak_key_stops_the_cli_with_one_line(
    given: dict[str, str], expected: str, tmp_path: Path
) -> None:
    line = _refusal_line(_run(["campaign", "list"], _clean_env(**given), tmp_path))
    assert expected in line
    assert DEVELOPMENT_SECRET not in line and "short-but-mine" not in line and "old-short" not in line


def test_an_explicit_development_environment_starts_on_the_development_key(
    database_url: str, tmp_path: Path
) -> None:
    env = _clean_env(environment="development")  # no DIALER_SECRET_KEY: the development one
    listed = _run(["campaign", "list"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr[-2000:]
    env["DIALER_PREVIOUS_SECRET_KEYS"] = DEVELOPMENT_SECRET
    assert _run(["campaign", "list"], env, tmp_path).returncode == 0
    # A long-running process too: the API starts and answers.
    port = free_port()
    log = (tmp_path / "api.log").open("w")
    api = subprocess.Popen([DIALER, "api", "--port", str(port)], env=env, cwd=tmp_path, stdout=log,
                           stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and api.poll() is None and status != 200:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code
            except httpx.HTTPError:
                time.sleep(0.2)
        assert status == 200, (tmp_path / "api.log").read_text()[-2000:]
    finally:
        api.terminate()
        api.wait(timeout=15)
        log.close()
