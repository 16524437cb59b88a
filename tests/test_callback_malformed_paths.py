"""A callback path no route takes gets 404 (a method none takes 405), never 500, for every provider: a
non-numeric account, an unknown provider or kind, a segment too many or too few. Through the served
application (workers.entrypoints.api.main), whose /callbacks/ fast path skips FastAPI's error handling."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from workers.entrypoints.api.main import app
from workers.providers.registry import PROVIDERS

MALFORMED = (
    "/callbacks/{p}/abc/hangup",
    "/callbacks/{p}/-1/hangup",
    "/callbacks/{p}/1.5/answer",
    "/callbacks/{p}//hangup",
    "/callbacks/{p}/1/no-such-kind",
    "/callbacks/{p}/1/hangup/ticket/extra",
    "/callbacks/{p}/1",
    "/callbacks/{p}",
    "/callbacks/no-such-provider/1/hangup",
    "/callbacks/",
)


@pytest.fixture(scope="module")
def served() -> TestClient:
    # No lifespan: a malformed path must be refused before anything needs the pools.
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_malformed_callback_path_is_404_never_500(served: TestClient, provider: str) -> None:
    answers = {(method, path.format(p=provider)): served.request(method, path.format(p=provider)).status_code
               for path in MALFORMED for method in ("GET", "POST")}
    assert {key: status for key, status in answers.items() if status != 404} == {}


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_method_no_callback_route_takes_is_405(served: TestClient, provider: str) -> None:
    answer = served.put(f"/callbacks/{provider}/1/hangup")
    assert answer.status_code == 405 and "POST" in answer.headers.get("allow", "")
