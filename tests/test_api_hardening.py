"""The campaign API against hostile input: uploads are authenticated and capped before their body is
read, the CLI's and the API's settings rules are one, ids and offsets past bigint are a 422, and every
error (a body FastAPI cannot parse, a route that does not exist) has the error shape."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from campaigns.config import get_settings


def _error_shape(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and body["message"], body
    return body


def _campaign(client: TestClient, auth: dict[str, str]) -> int:
    response = client.post("/campaigns", headers=auth, data={"name": f"h-{secrets.token_hex(4)}"},
                           files={"file": ("a.csv", b"phone\n+14155552671\n", "text/csv")})
    assert response.status_code == 201, response.text
    return int(response.json()["campaign_id"])


def test_an_upload_without_a_key_is_refused_before_its_body_is_read(client: TestClient) -> None:
    def endless() -> Iterator[bytes]:  # a body that would never end: it must not be read at all
        while True:
            yield b"x" * 65536

    response = client.post("/campaigns", content=endless(),
                           headers={"Content-Type": "multipart/form-data; boundary=b"})
    _error_shape(response, 401)


def test_an_upload_over_the_cap_is_refused_declared_or_streamed(client: TestClient, auth: dict[str, str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "max_upload_bytes", 10_000)
    big = b"phone\n" + b"+14155552671\n" * 2000
    declared = client.post("/campaigns", headers=auth, data={"name": "too-big"},
                           files={"file": ("a.csv", big, "text/csv")})
    assert _error_shape(declared, 413)["error"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\nphone\n"
        for _ in range(100):
            yield b"+14155552671\n" * 100

    streamed = client.post("/campaigns", content=chunks(),
                           headers={**auth, "Content-Type": "multipart/form-data; boundary=b"})
    _error_shape(streamed, 413)
    assert _campaign(client, auth) > 0  # a small one still loads


@pytest.mark.parametrize(("body", "field"), [
    ({"caller_id": "abc"}, "caller_id"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"cps": "NaN"}, "cps"),
    ({"days": [5, 1, 9]}, "days"),
    ({"provider_options": {"time_limit": -1}}, "provider_options.time_limit"),
    ({"provider_options": {"time_limit": "ten"}}, "provider_options.time_limit"),
    ({"provider_options": {"extra": {"hangup_url": "https://evil.example/"}}}, "provider_options.extra"),
])
def test_a_bad_setting_is_a_422_naming_its_field(client: TestClient, auth: dict[str, str],
                                                 body: dict[str, Any], field: str) -> None:
    campaign = _campaign(client, auth)
    error = _error_shape(client.patch(f"/campaigns/{campaign}", headers=auth, json=body), 422)
    assert any(f["field"].startswith(field) for f in error["fields"]), error


@pytest.mark.parametrize("path", ["/campaigns?offset=9223372036854775808", "/campaigns/9223372036854775808",
                                  "/campaigns/1/rejects?offset=99999999999999999999"])
def test_numbers_past_bigint_are_a_422_not_a_500(client: TestClient, auth: dict[str, str], path: str) -> None:
    _error_shape(client.get(path, headers=auth), 422)


def test_unparseable_bodies_and_unknown_routes_answer_in_the_error_shape(client: TestClient,
                                                                         auth: dict[str, str]) -> None:
    campaign = _campaign(client, auth)
    _error_shape(client.patch(f"/campaigns/{campaign}", headers={**auth, "Content-Type": "application/json"},
                              content=b"{not json"), 422)
    assert _error_shape(client.get("/no-such-route", headers=auth), 404)["error"] == "not_found"
    assert _error_shape(client.delete("/campaigns", headers=auth), 405)["error"] == "method_not_allowed"


def test_a_nul_in_a_form_field_is_a_422_not_a_500(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post("/campaigns", headers=auth, data={"name": "nul", "account": "\x00"},
                           files={"file": ("a.csv", b"phone\n+14155552671\n", "text/csv")})
    assert _error_shape(response, 422)["error"] in ("invalid_value", "not_found", "invalid_field")
