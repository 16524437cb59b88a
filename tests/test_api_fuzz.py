"""schemathesis against the API's own OpenAPI document, on a real `dialer api` process: no request the schema
allows (or nearly allows) gets a 5xx, and every 4xx carries the error shape {error, message[, fields]}.

It runs twice: with an admin key, and with an operator key of account B while the campaigns and DNC list
it may hit belong to account A. The second run also checks that nothing of A's shows: no answer carries
A's campaign names, numbers or reasons, and a path naming A's campaign or account is never a 2xx.

Size: HYPOTHESIS_PROFILE=ci (make test) or soak (make fuzz).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from campaigns import dnc
from campaigns.accounts import add_account
from campaigns.api_keys import Role, create_api_key
from campaigns.loader import LoadOptions, load_campaign_csv
from tests.engine_harness import Stack, running_stack

pytestmark = pytest.mark.timeout(600)


@dataclass(frozen=True)
class FuzzTarget:
    """The running API, a key for each run, and what of account A's an operator of B must never see."""

    stack: Stack
    database_url: str
    account_a: int
    keys: dict[str, dict[str, str]]
    a_campaigns: frozenset[str]  # ids, as a path parameter spells them
    a_accounts: frozenset[str]  # A's name and id
    a_texts: tuple[str, ...]  # A's campaign names, DNC number and reason
    a_campaign_prefix: str  # the names of A's campaigns, and of their clones, begin with it


@pytest.fixture(scope="module")
def api_stack(database_url: str, redis_client: Any) -> Iterator[FuzzTarget]:
    tag = uuid.uuid4().hex[:6]
    with running_stack(workers=0, beat=False) as stack:
        with psycopg.connect(database_url, autocommit=True) as conn:
            # Nothing dials these accounts (their campaigns have no caller id); if anything did, port 9
            # discards it on this host.
            a = add_account(conn, name=f"fuzz-a-{tag}", provider="plivo", auth_id=f"FA{tag}", auth_token="t",
                            cps=1, max_concurrent=1, base_url="http://127.0.0.1:9")
            b = add_account(conn, name=f"fuzz-b-{tag}", provider="plivo", auth_id=f"FB{tag}", auth_token="t",
                            cps=1, max_concurrent=1, base_url="http://127.0.0.1:9")
            admin = create_api_key(conn, name=f"fuzz-{tag}", role=Role.ADMIN).key
            operator_b = create_api_key(conn, name=f"fuzz-b-{tag}", role=Role.OPERATOR, accounts=[b]).key
            dnc.add_number(conn, "+12125559876", account_id=a, reason=f"fuzz-a-reason-{tag}")
        # Something to find: the campaigns the fuzzer's ids may hit, all of them account A's.
        prefix = f"fuzz-a-campaign-{tag}"
        names = [f"{prefix}-{n}" for n in range(2)]
        ids = [load_campaign_csv(name=name, options=LoadOptions(account_id=a),
                                 source=io.BytesIO(f"phone\n+1212555{n:04d}\n+14155550100\n".encode())).campaign_id
               for n, name in enumerate(names)]
        yield FuzzTarget(stack=stack, database_url=database_url, account_a=a,
                         keys={"admin": _bearer(admin), "operator_b": _bearer(operator_b)},
                         a_campaigns=frozenset(str(i) for i in ids),
                         a_accounts=frozenset({f"fuzz-a-{tag}", str(a)}),
                         a_texts=(*names, "+12125559876", f"fuzz-a-reason-{tag}", f"FA{tag}"),
                         a_campaign_prefix=prefix)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def api_schema(api_stack: FuzzTarget) -> Any:
    # `POST /accounts/{account}/test` sends a request to the account's carrier: an account another test
    # added with a real carrier's default base URL would take the fuzz off this host, so it is left out
    # (tests/test_account_credentials_check.py covers it against the simulator).
    schema = schemathesis.openapi.from_url(f"{api_stack.stack.api_url}/openapi.json")
    return schema.exclude(path_regex=r"^/accounts/[^/]+/test$")


def _check(case: Any, target: FuzzTarget, key: str) -> None:
    response = case.call(base_url=target.stack.api_url, headers=target.keys[key], timeout=30)
    where = f"{case.method} {case.formatted_path}"
    if response.status_code == 503 and "too many clients" in response.text:
        reject()  # the shared Postgres turned the connection away: this case says nothing about the API
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body.get("message"), \
            f"{where}: {response.status_code} {body}"
    if key == "operator_b":
        shown = [text for text in target.a_texts if text in response.text]
        params = {str(value) for value in (case.path_parameters or {}).values()}
        names_a = params & (target.a_campaigns | target.a_accounts)
        if (shown or (names_a and 200 <= response.status_code < 300)) and _a_gave_something_away(target):
            reject()  # the admin run moved one of A's campaigns to another account: it is no longer A's
        assert not shown, f"{where}: an operator of B sees A's {shown}: {response.text[:300]}"
        assert not (names_a and 200 <= response.status_code < 300), f"{where}: A's object answered 2xx"


def _a_gave_something_away(target: FuzzTarget) -> bool:
    """Whether one of A's campaigns, or a clone of one, now belongs to another account (the admin run may
    PATCH a campaign's account)."""
    with psycopg.connect(target.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM campaign WHERE (id = ANY(%s) OR name LIKE %s || '%%') "
                           "AND account_id IS DISTINCT FROM %s",
                           ([int(i) for i in target.a_campaigns], target.a_campaign_prefix,
                            target.account_a)).fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize("key", ["admin", "operator_b"], ids=["admin", "operator-of-another-account"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@settings(suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_5xx_and_every_4xx_has_the_error_shape(data: st.DataObject, mode: GenerationMode, key: str,
                                                  api_schema: Any, api_stack: FuzzTarget) -> None:
    """Every operation of the schema, cases the schema allows and cases it does not, drawn by hypothesis;
    with an admin key, and with an operator key of another account than the objects there are to find."""
    schema = api_schema
    if key == "admin":
        # The admin may revoke any key, its own and the other run's included, after which every case is a
        # 401 that tests nothing: revoking is left to tests/test_api_key_scopes.py.
        schema = schema.exclude(method="DELETE", path_regex=r"^/api-keys/")
    case = data.draw(schema.as_strategy(generation_mode=mode))
    _check(case, api_stack, key)
