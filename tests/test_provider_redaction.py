"""Issue 20 item 10: a carrier's error text never carries an account secret in any form or any part."""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

import httpx
import pytest

from campaigns.accounts import AccountCredentials
from workers.providers.calls import CallbackUrls, OutboundCall
from workers.providers.errors import ProviderError, Rejected
from workers.providers.http import MESSAGE_LIMIT, REDACTED, make_client, redact, send
from workers.providers.registry import adapter_for
from workers.providers.signatures import bandwidth_callback_credentials

TOKEN = "s3cr/et+tok=en&42~x"  # every character URL encoding changes: '/', '+', '=', '&'
PLIVO = AccountCredentials(7, "plivo", "MAREDACT01", TOKEN, "https://api.plivo.test")
BANDWIDTH = AccountCredentials(8, "bandwidth", "9900008", TOKEN, "https://voice.bandwidth.test",
                               options={"application_id": "app-1", "api_username": "api-user"})

MIN_FRAGMENT = 4  # redaction.MIN_FRAGMENT; this file imports only what 1fecf19 had, to show each leak there


def no_part_of(secret: str, text: str) -> bool:
    """True when no MIN_FRAGMENT-long piece of `secret` appears in `text`."""
    return not any(secret[i:i + MIN_FRAGMENT] in text for i in range(len(secret) - MIN_FRAGMENT + 1))


@pytest.mark.parametrize("form", [TOKEN, quote(TOKEN), quote(TOKEN, safe=""), quote_plus(TOKEN),
                                  quote(TOKEN, safe="").lower()], ids=["plain", "quote", "quote-no-safe",
                                                                       "quote_plus", "lower-case-escapes"])
def test_a_url_encoded_token_is_redacted(form: str) -> None:
    said = redact(f"invalid request https://api.test/v1?token={form}&x=1", PLIVO)
    assert REDACTED in said
    assert form not in said and no_part_of(TOKEN, said)


@pytest.mark.parametrize(("account", "username"), [(PLIVO, "MAREDACT01"), (BANDWIDTH, "api-user")],
                         ids=["plivo-auth_id", "bandwidth-api_username"])
def test_the_base64_of_a_basic_header_is_redacted(account: AccountCredentials, username: str) -> None:
    header = base64.b64encode(f"{username}:{TOKEN}".encode()).decode()
    said = redact(f"refused Authorization: Basic {header}", account)
    assert header not in said
    assert said == f"refused Authorization: Basic {REDACTED}"


def test_a_token_that_straddles_the_message_limit_leaves_no_prefix_through_the_error_path() -> None:
    body = "x" * (MESSAGE_LIMIT - 10) + TOKEN + " trailing words"
    client = make_client(transport=httpx.MockTransport(lambda request: httpx.Response(400, text=body)))
    with pytest.raises(Rejected) as caught:
        send(client, client.build_request("POST", "https://api.plivo.test/v1/Call/"), PLIVO)
    assert no_part_of(TOKEN, caught.value.message)
    assert REDACTED[:5] in caught.value.message  # the cut falls inside the marker, not the token


def test_a_token_the_carrier_cut_itself_at_the_end_is_redacted() -> None:
    said = redact(f"bad credentials for {TOKEN[:12]}", PLIVO)
    assert said == f"bad credentials for {REDACTED}"


def test_a_bandwidth_400_echoing_the_callback_password_and_its_basic_header_is_redacted() -> None:
    username, password = bandwidth_callback_credentials(BANDWIDTH.account_id)
    urls = CallbackUrls(answer_url="https://cb.test/answer", hangup_url="https://cb.test/hangup",
                        username=username, password=password)
    call = OutboundCall(caller_id="+14155550000", destinations=["+14155550001"], callbacks=urls)
    header = base64.b64encode(f"{username}:{password}".encode()).decode()

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"description": f"{request.content.decode()} auth={header}"})

    client = make_client(transport=httpx.MockTransport(echo))
    with pytest.raises(ProviderError) as caught:
        adapter_for("bandwidth").create_calls(client, BANDWIDTH, call)
    assert password not in caught.value.message and header not in caught.value.message
    assert no_part_of(password, caught.value.message)
    assert REDACTED in caught.value.message


@pytest.mark.parametrize("provider", ["bandwidth", "voipbin"])
def test_an_accepted_answer_without_ids_is_reported_without_the_token(provider: str) -> None:
    from workers.providers.errors import Ambiguous

    token = "tok/with+secret=chars-123456"
    account = AccountCredentials(account_id=1, provider=provider, auth_id="A1", auth_token=token,
                                 base_url="https://carrier.example",
                                 options={"api_username": "u", "application_id": "app"})
    body = f'{{"echo": "{token}", "also": "{quote(token, safe="")}"}}'
    status = 201 if provider == "bandwidth" else 200
    response = httpx.Response(status, text=body if provider == "bandwidth" else f"[{body}]",
                              request=httpx.Request("POST", "https://carrier.example/calls"))
    with pytest.raises(Ambiguous) as raised:
        call = OutboundCall(caller_id="+14155550000", destinations=["+14155550001"],
                            callbacks=CallbackUrls(answer_url="https://d.example/a", hangup_url="https://d.example/h"))
        adapter_for(provider).read_create_answer(response, account, call)
    assert token not in str(raised.value) and quote(token, safe="") not in str(raised.value)
