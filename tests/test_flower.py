"""`dialer flower`: refuses to start without basic auth outside development; with it, Flower asks every
request for the credentials. Dial chunks carry names and arguments Flower's search finds by campaign."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from campaigns.errors import InvalidRequest
from workers.entrypoints.flower_auth import flower_basic_auth
from workers.entrypoints.local_stack import free_port
from workers.runtime.task_labels import dial_chunk_options

pytestmark = pytest.mark.timeout(120)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DIALER_FLOWER_AUTH"}
    return {
        **env,
        "DIALER_ENVIRONMENT": "production",
        "DIALER_SECRET_KEY": "a-real-secret-for-this-flower-test-0123456789",
        **extra,
    }


def test_flower_refuses_to_start_without_auth_outside_development() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "workers.entrypoints.cli", "flower", "--port", str(free_port())],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "refusing to start Flower without basic auth" in done.stderr
    assert "DIALER_FLOWER_AUTH" in done.stderr


def test_flower_auth_is_checked_for_shape_and_optional_only_in_development() -> None:
    assert flower_basic_auth("development", None) is None
    assert flower_basic_auth("production", "ops:s3cret,viewer:pw") == "ops:s3cret,viewer:pw"
    with pytest.raises(InvalidRequest, match="user:password"):
        flower_basic_auth("production", "ops-without-password")
    with pytest.raises(InvalidRequest, match="refusing"):
        flower_basic_auth("staging", "")


def test_flower_with_auth_answers_401_without_the_credentials(database_url: str, redis_client) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.entrypoints.cli", "flower", "--port", str(port)],
        env=_env(DIALER_FLOWER_AUTH="ops:s3cret"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert answer is not None, (
            proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
        )
        assert answer.status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/", auth=("ops", "wrong"), timeout=5).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/", auth=("ops", "s3cret"), timeout=5).status_code == 200
        assert "s3cret" not in " ".join(proc.args), "the password is never on the command line"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_dial_chunk_is_named_by_campaign_and_size_for_flowers_search() -> None:
    options = dial_chunk_options(12, list(range(100, 140)))
    assert options["shadow"] == "dial_chunk campaign=12 destinations=40"
    assert options["argsrepr"] == "campaign=12 destinations=40 ids=[100,101,102,…,137,138,139]"
    assert dial_chunk_options(3, [7, 8])["argsrepr"] == "campaign=3 destinations=2 ids=[7,8]"
