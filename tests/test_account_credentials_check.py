"""`dialer account test` (and `POST /accounts/{name}/test`): every provider's credentials are checked with one
harmless authenticated request against a carrier that refuses exactly what the real one would (the
simulator as a real HTTP server), nothing is dialed, and what is wrong is named: a bad token, an unknown
account id, a wrong base URL, a refused connection; DIALER_PUBLIC_URL is judged as far as it can be."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from campaigns.accounts import add_account
from tests.sim_helpers import RunningSimulator, start_simulator
from workers.callbacks.public_url_check import local_host_reason, public_url_findings
from workers.entrypoints.cli import app
from workers.providers.calls import AccountCredentials
from workers.providers.credentials_check import (
    PROBE_RULES,
    Verdict,
    check_credentials,
    judge_answer,
)
from workers.providers.registry import PROVIDERS, adapter_for

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()
# The simulator's default accounts (simulator.config.DEFAULT_ACCOUNTS).
GOOD: dict[str, dict[str, Any]] = {
    "plivo": {"auth_id": "MAPLIVO0000000000000", "auth_token": "plivo-token"},
    "vobiz": {"auth_id": "MA_VOBIZ0001", "auth_token": "vobiz-token"},
    "tryvox": {"auth_id": "tryvox-account", "auth_token": "tvx_sk_test_simulator"},
    "voipbin": {"auth_id": "voipbin-customer", "auth_token": "voipbin-token"},
    "bandwidth": {"auth_id": "5555555", "auth_token": "bandwidth-password",
                  "options": {"api_username": "bandwidth-api-user",
                              "application_id": "7fc9698a-b04a-468b-9e8f-91238c0d0086"}},
}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with start_simulator(None, speed=50, seed=4) as running:
        yield running


def _account(provider: str, base_url: str, **changes: Any) -> AccountCredentials:
    spec = {**GOOD[provider], **changes}
    return AccountCredentials(account_id=1, provider=provider, auth_id=spec["auth_id"],
                              auth_token=spec["auth_token"], base_url=base_url,
                              options=spec.get("options", {}))


def _check(account: AccountCredentials) -> Any:
    with httpx.Client(timeout=5) as client:
        return check_credentials(client, adapter_for(account.provider), account)


def _refused_url() -> str:
    with socket.socket() as sock:  # a port nothing listens on once this closes
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_every_provider_has_a_credentials_request_and_says_where_it_comes_from() -> None:
    assert set(PROBE_RULES) == set(PROVIDERS)
    for rule in PROBE_RULES.values():
        assert rule.source.startswith(("page, ", "assumed: "))


@pytest.mark.parametrize("provider", sorted(GOOD))
def test_good_credentials_are_accepted_and_nothing_is_dialed(sim: RunningSimulator, provider: str) -> None:
    finding = _check(_account(provider, sim.base_url))
    assert finding.verdict == Verdict.OK, finding
    assert finding.message.startswith("credentials accepted")
    assert not [c for c in sim.ledger()["calls"] if c["provider"] == provider], "the check placed a call"


@pytest.mark.parametrize("provider", sorted(GOOD))
def test_a_bad_token_is_named(sim: RunningSimulator, provider: str) -> None:
    finding = _check(_account(provider, sim.base_url, auth_token="not-the-token"))
    assert finding.verdict == Verdict.PROBLEM
    assert finding.message.startswith("bad "), finding.message
    assert "not-the-token" not in finding.message


@pytest.mark.parametrize(("provider", "named"), [
    ("plivo", "bad auth id"),  # Basic auth: an unknown auth id is refused as credentials (401)
    ("vobiz", "unknown account id"),  # page, status codes table: 404 for an auth_id that does not exist
    ("tryvox", "bad API key (the token) or account id"),
    ("bandwidth", "unknown account id"),  # 403: the API user may not use that account
])
def test_an_unknown_account_id_is_named(sim: RunningSimulator, provider: str, named: str) -> None:
    finding = _check(_account(provider, sim.base_url, auth_id="NOSUCHACCOUNT9"))
    assert finding.verdict == Verdict.PROBLEM
    assert named in finding.message, finding.message


@pytest.mark.parametrize("provider", sorted(GOOD))
def test_a_wrong_base_url_is_named(sim: RunningSimulator, provider: str) -> None:
    finding = _check(_account(provider, f"{sim.base_url}/not-the-api"))
    assert finding.verdict == Verdict.PROBLEM
    assert "wrong base URL" in finding.message or "unknown account id or wrong base URL" in finding.message, (
        finding.message)


@pytest.mark.parametrize("provider", sorted(GOOD))
def test_a_refused_connection_is_named(provider: str) -> None:
    finding = _check(_account(provider, _refused_url()))
    assert finding.verdict == Verdict.PROBLEM
    assert finding.message.startswith("network refused"), finding.message


def test_a_lookup_404_that_every_token_gets_is_not_taken_for_accepted_credentials() -> None:
    """A server that answers 404 to everything (a wrong base URL) must not pass a lookup-based check."""
    transport = httpx.MockTransport(lambda request: httpx.Response(404, json={"error": "not found"}))
    account = _account("tryvox", "https://api.example.test")
    with httpx.Client(transport=transport) as client:
        finding = check_credentials(client, adapter_for("tryvox"), account)
    assert finding.verdict == Verdict.PROBLEM
    assert "answers 404 whatever the credentials" in finding.message


@pytest.mark.parametrize(("status", "verdict", "words"), [
    (200, Verdict.OK, "credentials accepted"),
    (401, Verdict.PROBLEM, "bad token"),
    (403, Verdict.PROBLEM, "unknown account id or no access"),
    (404, Verdict.PROBLEM, "unknown account id or wrong base URL"),
    (302, Verdict.PROBLEM, "wrong base URL"),
    (402, Verdict.WARNING, "balance is too low"),
    (429, Verdict.PROBLEM, "cannot tell"),
    (503, Verdict.PROBLEM, "cannot tell"),
])
def test_each_answer_to_a_list_request_is_named(status: int, verdict: Verdict, words: str) -> None:
    account = _account("voipbin", "https://api.voipbin.example")
    request = httpx.Request("GET", "https://api.voipbin.example/v1.0/calls?token=voipbin-token")
    response = httpx.Response(status, json={"message": "voipbin-token is wrong"} if status != 200 else {},
                              headers={"location": "https://elsewhere.example/"}, request=request)
    finding = judge_answer(account, "list", response)
    assert (finding.verdict, words in finding.message) == (verdict, True), finding.message
    assert "voipbin-token" not in finding.message, "the token is in the query and in the carrier's echo"


def test_a_2xx_that_is_not_json_is_a_wrong_base_url() -> None:
    request = httpx.Request("GET", "https://www.example.com/v1.0/calls")
    response = httpx.Response(200, text="<html>welcome</html>", request=request)
    finding = judge_answer(_account("voipbin", "https://www.example.com"), "list", response)
    assert finding.verdict == Verdict.PROBLEM and "wrong base URL" in finding.message


@pytest.mark.parametrize(("host", "local"), [
    ("localhost", True), ("127.0.0.1", True), ("127.8.9.1", True), ("[::1]", True), ("10.1.2.3", True),
    ("172.20.0.5", True), ("192.168.1.10", True), ("169.254.0.1", True), ("100.64.1.1", True),
    ("0.0.0.0", True), ("dialer.local", True), ("api", True), ("box.internal", True),
    ("dialer.example.com", False), ("52.10.20.30", False), ("8.8.8.8", False),
])
def test_hosts_no_carrier_can_reach_are_recognised(host: str, local: bool) -> None:
    assert (local_host_reason(host) is not None) == local


@pytest.mark.parametrize(("url", "environment", "carrier", "expected"), [
    ("https://dialer.example.com", "production", "https://api.plivo.com", []),
    ("http://dialer.example.com", "production", "https://api.plivo.com", [(Verdict.PROBLEM, "plain http")]),
    ("http://dialer.example.com", "development", "https://api.plivo.com",
     [(Verdict.WARNING, "plain http")]),
    ("https://127.0.0.1:8000", "production", "https://api.plivo.com",
     [(Verdict.PROBLEM, "public URL not reachable by the carrier")]),
    ("http://localhost:8000", "development", "https://api.voipbin.net",
     [(Verdict.PROBLEM, "a local name (localhost)"), (Verdict.WARNING, "plain http")]),
    ("https://dialer.local", "production", "https://api.tryvox.io", [(Verdict.PROBLEM, "a local name")]),
    ("http://127.0.0.1:8000", "development", "http://127.0.0.1:8765", [(Verdict.OK, "simulator")]),
    ("ftp://dialer.example.com", "production", "https://api.plivo.com",
     [(Verdict.PROBLEM, "not an http(s)")]),
])
def test_the_public_url_is_judged_as_an_address_the_carrier_calls(
    url: str, environment: str, carrier: str, expected: list[tuple[Verdict, str]]
) -> None:
    findings = public_url_findings(url, environment=environment, carrier_base_url=carrier)
    assert len(findings) == len(expected), findings
    seen = [(f.verdict, words in f.message) for f, (_, words) in zip(findings, expected, strict=True)]
    assert seen == [(verdict, True) for verdict, _ in expected], findings


def _add(conn: psycopg.Connection, provider: str, base_url: str, **changes: Any) -> str:
    spec = {**GOOD[provider], **changes}
    name = f"check-{provider}-{uuid.uuid4().hex[:6]}"
    add_account(conn, name=name, provider=provider, auth_id=spec["auth_id"], auth_token=spec["auth_token"],
                cps=5, max_concurrent=10, base_url=base_url, options=spec.get("options"))
    conn.commit()
    return name


def test_dialer_account_test_names_a_bad_token_and_an_unreachable_public_url(
    database_url: str, sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from campaigns.config import get_settings

    monkeypatch.setenv("DIALER_PUBLIC_URL", _refused_url())  # no API listens there
    get_settings.cache_clear()
    try:
        with psycopg.connect(database_url) as conn:
            good = _add(conn, "voipbin", sim.base_url)
            bad = _add(conn, "bandwidth", sim.base_url, auth_token="wrong-password")
        passed = runner.invoke(app, ["account", "test", good])
        failed = runner.invoke(app, ["account", "test", bad])
    finally:
        get_settings.cache_clear()
    assert "OK       credentials: credentials accepted" in passed.output, passed.output
    assert "page, Get call list" in passed.output
    assert "public URL not reachable from here" in passed.output and passed.exit_code == 1
    assert "bad API user (--api-username) or its password (the token)" in failed.output, failed.output
    assert failed.exit_code == 1 and "wrong-password" not in failed.output
    assert "voipbin-token" not in passed.output


def test_the_api_checks_an_account_like_the_cli(
    database_url: str, sim: RunningSimulator, client: Any, auth: dict[str, str]
) -> None:
    with psycopg.connect(database_url) as conn:
        name = _add(conn, "tryvox", sim.base_url)
        bad = _add(conn, "tryvox", sim.base_url, auth_token="tvx_sk_test_wrong")
    assert client.post(f"/accounts/{name}/test").status_code == 401, "no API key, no check"
    answer = client.post(f"/accounts/{name}/test", headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    credentials = [f for f in body["findings"] if f["check"] == "credentials"]
    assert credentials == [{"check": "credentials", "verdict": "ok", "message": credentials[0]["message"]}]
    assert body["probe_source"].startswith("assumed: ") and body["console_setup"]["nothing_to_set"] is True
    refused = client.post(f"/accounts/{bad}/test", headers=auth).json()
    assert refused["ok"] is False and "bad API key" in refused["findings"][0]["message"]
    assert "tvx_sk_test_wrong" not in str(refused)
    assert client.post("/accounts/no-such-account/test", headers=auth).status_code == 404


def test_the_simulated_voipbin_lists_calls_only_for_its_token(sim: RunningSimulator) -> None:
    good = httpx.get(f"{sim.base_url}/v1.0/calls", params={"token": "voipbin-token"})
    assert good.status_code == 200 and set(good.json()) == {"result", "next_page_token"}
    assert httpx.get(f"{sim.base_url}/v1.0/calls", params={"token": "nope"}).status_code == 401
    assert httpx.get(f"{sim.base_url}/v1.0/calls").status_code == 401
