"""A sixth provider is one adapter file plus one registry line: what the rest of the system must know about a
provider (base URL, callback nonces, acknowledgement, answer document, callback credentials) is declared by
its adapter, and no module outside workers/providers names a provider kind."""

from __future__ import annotations

import ast
from pathlib import Path

import psycopg
import pytest

from campaigns.accounts import add_account
from campaigns.errors import InvalidRequest
from workers.callbacks.receiver import KEPT_HEADERS
from workers.callbacks.urls import callback_urls_for
from workers.providers.registry import CALLBACK_NONCE_HEADERS, PROVIDERS

REPO = Path(__file__).resolve().parent.parent
# The demo picks a provider for its simulator account: a choice, not knowledge about the provider.
MAY_NAME_A_PROVIDER = {Path("workers/providers"), Path("workers/entrypoints/demo.py")}


@pytest.mark.parametrize("kind", sorted(PROVIDERS))
def test_every_adapter_declares_what_the_system_needs_to_know(kind: str) -> None:
    traits = PROVIDERS[kind].traits
    assert traits.kind == kind and traits.default_base_url.startswith("https://")
    assert traits.answer.document_kind in ("xml", "none")
    assert traits.answer.takes_answer_url or traits.answer.document_kind == "none"
    assert 200 <= traits.callbacks.ack_status < 300
    assert all(header.islower() for header in traits.callbacks.nonce_headers)


def test_accounts_accept_exactly_the_registered_kinds_with_their_default_base_url(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        for kind, adapter in PROVIDERS.items():
            required = {name: "x" for name in adapter.traits.accounts.required_options}
            account_id = add_account(conn, name=f"knowledge-{kind}", provider=kind, auth_id="A",
                                     auth_token="t", cps=1, max_concurrent=1, options=required)
            row = conn.execute("SELECT base_url FROM provider_account WHERE id = %s",
                               (account_id,)).fetchone()
            assert row is not None and row[0] == adapter.traits.default_base_url
        with pytest.raises(InvalidRequest, match="provider must be one of plivo, vobiz, tryvox, voipbin"):
            add_account(conn, name="knowledge-x", provider="sixth", auth_id="A", auth_token="t", cps=1,
                        max_concurrent=1)
        conn.rollback()


def test_callback_nonce_headers_are_checked_and_kept_for_every_signing_provider() -> None:
    declared = {h for adapter in PROVIDERS.values() for h in adapter.traits.callbacks.nonce_headers}
    assert declared == set(CALLBACK_NONCE_HEADERS) and declared <= set(KEPT_HEADERS)


def test_only_an_adapter_that_takes_callback_credentials_gets_them() -> None:
    for kind, adapter in PROVIDERS.items():
        urls = callback_urls_for(kind, 42, "batch")
        assert (urls.username, urls.password) == adapter.callback_credentials(42)
    assert PROVIDERS["bandwidth"].callback_credentials(42)[0] is not None


def _names_a_provider(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return [f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in PROVIDERS and id(node) not in docstrings]


def test_no_module_outside_the_adapters_names_a_provider_kind() -> None:
    found = []
    for package in ("campaigns", "workers"):
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO)
            if not any(relative == allowed or allowed in relative.parents for allowed in MAY_NAME_A_PROVIDER):
                found += _names_a_provider(path)
    assert found == []
