"""The rules of a campaign's ordered accounts (its primary, then its fallbacks) as an operator changes them,
shared by every way in (CLI, HTTP API). Pure: the caller resolves the names it was given to ids first and
applies the result (campaigns.control.configure). Each refusal is an InvalidSetting whose `field` is where
the operator wrote the value (`--fallback-account` on the CLI, `accounts.2` in the API) and whose message
names the value, so both ways in say which flag or field and which account.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from campaigns.campaign_accounts import Fallback
from campaigns.settings_rules import InvalidSetting, check_caller_id


@dataclass(frozen=True)
class NamedAccount:
    """An account as the operator named it: its id, the name or id they wrote, and where they wrote it."""

    account_id: int
    given: str
    field: str  # "--account", "--fallback-account", "accounts.1" …


@dataclass(frozen=True)
class CallerIdChoice:
    """A caller id for one of the campaign's accounts (`account_id` None: they named no account at all)."""

    account_id: int | None
    given: str  # the account as they wrote it
    caller_id: str
    field: str  # "--account-caller-id", "accounts.1.caller_id" …


@dataclass(frozen=True)
class AccountsChange:
    """What an operator asks of the list. `primary` None keeps the campaign's; `fallbacks` None keeps its
    fallbacks, [] drops them all."""

    primary: NamedAccount | None = None
    fallbacks: Sequence[NamedAccount] | None = None
    caller_ids: Sequence[CallerIdChoice] = ()

    def changes_anything(self) -> bool:
        return self.primary is not None or self.fallbacks is not None or bool(self.caller_ids)


@dataclass(frozen=True)
class AccountList:
    """The list the change makes: the primary (`campaign.account_id`), its caller id when one was named for
    it (it becomes the campaign's own, `campaign.caller_id`, the one fallbacks without theirs share), and the
    fallbacks in order with their own caller ids (None: the shared one)."""

    primary: int | None
    primary_caller_id: str | None
    fallbacks: tuple[Fallback, ...]


def checked_list(
    change: AccountsChange,
    *,
    current_primary: int | None,
    current_fallbacks: Sequence[Fallback],
    names: Mapping[int, str],
    region: str,
    shared_caller_id: str | None = None,
) -> AccountList:
    """The campaign's accounts after `change`, or InvalidSetting naming the flag or field and the account:
    an account named twice, the primary named again as a fallback, fallbacks without a primary, a caller id
    for an account not in the list or not valid (checked as the campaign's own caller id is, in its default
    region). `names`: every account id involved -> its name (for messages about accounts kept as they were).
    `shared_caller_id`: the campaign's caller id given in the same change, already checked."""
    primary = change.primary.account_id if change.primary is not None else current_primary
    if change.fallbacks is None:
        kept: list[tuple[Fallback, NamedAccount | None]] = [(f, None) for f in current_fallbacks]
    else:
        kept = [(Fallback(n.account_id), n) for n in change.fallbacks]
    _check_order(change, primary, kept, names)
    caller_ids: dict[int, str | None] = {f.account_id: f.caller_id for f, _ in kept}
    order = ([primary] if primary is not None else []) + [f.account_id for f, _ in kept]
    primary_caller_id: str | None = None
    for choice in change.caller_ids:
        value = _checked_caller_id(choice, order, names, region)
        if choice.account_id != primary:
            caller_ids[value[0]] = value[1]
        elif shared_caller_id is not None and shared_caller_id != value[1]:
            raise InvalidSetting(choice.field, f"{choice.given}={value[1]} is the primary's caller id, "
                                 "which is the campaign's own, and the campaign's caller id is given as "
                                 f"{shared_caller_id} too: give one of them")
        else:
            primary_caller_id = value[1]
    return AccountList(primary=primary, primary_caller_id=primary_caller_id,
                       fallbacks=tuple(Fallback(f.account_id, caller_ids[f.account_id]) for f, _ in kept))


def _check_order(change: AccountsChange, primary: int | None,
                 kept: Sequence[tuple[Fallback, NamedAccount | None]], names: Mapping[int, str]) -> None:
    """Each account once, the primary first and only there, and no fallback without a primary."""
    seen: dict[int, str] = {}
    for fallback, named in kept:
        if named is None:
            continue
        if fallback.account_id == primary:
            whose = change.primary.given if change.primary is not None else names.get(primary, str(primary))
            raise InvalidSetting(named.field, f"{named.given!r} is the primary account ({whose!r}); a "
                                 "campaign's account cannot also be its fallback")
        if fallback.account_id in seen:
            raise InvalidSetting(named.field, f"{named.given!r} is named twice (as "
                                 f"{seen[fallback.account_id]!r} before): each account appears once in a "
                                 "campaign's list")
        seen[fallback.account_id] = named.given
    if change.fallbacks is None and change.primary is not None:
        for position, (fallback, _) in enumerate(kept, start=1):
            if fallback.account_id == primary:
                raise InvalidSetting(
                    change.primary.field,
                    f"{change.primary.given!r} is fallback {position} of this campaign: give its fallbacks "
                    "again without it (--fallback-account, or the API's accounts) or drop them "
                    "(--no-fallbacks)")
    if kept and primary is None:
        first = kept[0][1]
        raise InvalidSetting(first.field if first else "account",
                             "a campaign with no account cannot have fallbacks: name its primary account too "
                             "(--account, or the first of the API's accounts)")


def _checked_caller_id(choice: CallerIdChoice, order: Sequence[int], names: Mapping[int, str],
                       region: str) -> tuple[int, str]:
    """The account and its caller id in E.164, if the account is in the list and the caller id valid."""
    if choice.account_id is None or choice.account_id not in order:
        listed = ", ".join(names.get(a, str(a)) for a in order) or "none yet"
        raise InvalidSetting(choice.field, f"{choice.given!r} is not one of this campaign's accounts "
                             f"({listed}): name it with --account or --fallback-account first")
    try:
        return choice.account_id, check_caller_id(choice.caller_id, region)
    except InvalidSetting as exc:
        raise InvalidSetting(choice.field, f"{choice.given}: {exc.message}") from None
