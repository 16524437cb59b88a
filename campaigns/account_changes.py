"""Changing a campaign's accounts (its primary and its ordered fallbacks) in `control.configure`: read what
the rules need, check the new list (campaigns.account_list_rules), check every account newly in it against
what the campaign holds (its provider options, its destinations), and write the fallbacks. The primary and
its caller id stay columns of the campaign, written by configure with the other settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from campaigns.account_list_rules import AccountList, AccountsChange, NamedAccount, checked_list
from campaigns.campaign_accounts import Fallback, campaign_fallbacks, replace_fallbacks
from campaigns.provider_options import InvalidOption, unsupported_option, validate_provider_options
from campaigns.readiness import undialable_destinations
from campaigns.settings_rules import CampaignSettings, InvalidSetting, check_caller_id


@dataclass(frozen=True)
class AccountsPlan:
    """The settings with the primary and its caller id the change sets, and the fallbacks to write
    (None: they stay as they are)."""

    settings: CampaignSettings
    fallbacks: tuple[Fallback, ...] | None
    added: tuple[tuple[Fallback, str], ...]  # fallbacks new to the list, with where the operator named them


def _names_and_providers(conn: psycopg.Connection, ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    rows = conn.execute("SELECT id, name, provider FROM provider_account WHERE id = ANY(%s)",
                        (sorted(set(ids)),)).fetchall()
    return {int(r[0]): (str(r[1]), str(r[2])) for r in rows}


def plan_accounts(conn: psycopg.Connection, row: Mapping[str, Any], settings: CampaignSettings,
                  change: AccountsChange | None) -> AccountsPlan:
    """Check the list `change` (and a bare `settings.account_id`, the primary named alone) makes, or
    InvalidSetting naming the flag or field and the account."""
    if settings.account_id is not None and (change is None or change.primary is None):
        change = dataclasses.replace(change or AccountsChange(),
                                     primary=NamedAccount(settings.account_id, str(settings.account_id),
                                                          "account"))
    if change is None or not change.changes_anything():
        return AccountsPlan(settings, None, ())
    current = campaign_fallbacks(conn, row["id"])
    named = [*([change.primary] if change.primary else []), *(change.fallbacks or [])]
    known = _names_and_providers(conn, [row["account_id"] or 0, *(f.account_id for f in current),
                                        *(n.account_id for n in named)])
    shared = (check_caller_id(settings.caller_id, row["default_region"])
              if settings.caller_id is not None else None)
    listed: AccountList = checked_list(
        change, current_primary=row["account_id"], current_fallbacks=current,
        names={i: name for i, (name, _) in known.items()}, region=row["default_region"],
        shared_caller_id=shared)
    before = {f.account_id for f in current} | {row["account_id"]}
    where = {n.account_id: n.field for n in change.fallbacks or []}
    added = tuple((f, where.get(f.account_id, "fallback")) for f in listed.fallbacks
                  if f.account_id not in before)
    caller_id = listed.primary_caller_id or settings.caller_id
    new_primary = listed.primary if listed.primary != row["account_id"] else None
    return AccountsPlan(dataclasses.replace(settings, account_id=new_primary, caller_id=caller_id),
                        listed.fallbacks, added)


def require_fallbacks_suit(conn: psycopg.Connection, row: Mapping[str, Any], plan: AccountsPlan,
                           options_given: Mapping[str, Any] | None, *, plain_http_urls: bool) -> None:
    """Every fallback of the list takes the campaign's provider options, and one new to the list dials every
    destination the campaign may still dial; else InvalidSetting naming the account (nothing is written)."""
    fallbacks = plan.fallbacks if plan.fallbacks is not None else tuple(
        campaign_fallbacks(conn, row["id"]))
    if not fallbacks:
        return
    known = _names_and_providers(conn, (f.account_id for f in fallbacks))
    merged = {**(row["provider_options"] or {}), **(options_given or {})}
    added = dict((f.account_id, field) for f, field in plan.added)
    for fallback in fallbacks:
        name, provider = known[fallback.account_id]
        if options_given:  # what the operator sets now must suit each account, as it must the primary
            try:
                validate_provider_options(provider, dict(options_given), plain_http_urls=plain_http_urls)
            except InvalidOption as exc:
                raise InvalidSetting(exc.field, f"{exc.message} (fallback account {name!r})") from None
        if fallback.account_id not in added:
            continue
        field = added[fallback.account_id]
        refusal = unsupported_option(provider, merged)
        if refusal is not None:
            raise InvalidSetting(field, f"{name!r}: {refusal.field}: {refusal.message}, and this campaign "
                                 "sets it")
        undialable = undialable_destinations(conn, row["id"], provider)
        if undialable is not None:
            raise InvalidSetting(field, f"{name!r}: {undialable.describe(row['id'], provider)}, so it cannot "
                                 "be this campaign's fallback")


def write_fallbacks(conn: psycopg.Connection, campaign_id: int, plan: AccountsPlan) -> bool:
    """Write the plan's fallbacks (in the caller's transaction); whether there was anything to write."""
    if plan.fallbacks is None:
        return False
    replace_fallbacks(conn, campaign_id, plan.fallbacks)
    return True
