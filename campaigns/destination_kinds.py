"""Which kinds of destination each provider can dial: "tel" (an E.164 number) and "sip" (a SIP URI), as its
adapter declares (workers.providers.registry registers them here: the domain names no provider), and the
reason naming the provider when it cannot dial one (pure; the loader's parser processes import it).
"""

from __future__ import annotations

from collections.abc import Iterable

TEL = "tel"
SIP = "sip"
KIND_NAMES = {TEL: "E.164 numbers", SIP: "SIP URIs"}
# The loader's reject reason for such a row (campaigns.numbers.RejectReason), and the outcome the dial path
# ends such a destination with when it was stored before the loader refused them.
CANNOT_DIAL = "provider_cannot_dial"
# A stored destination's kind in SQL: the loader keeps a SIP URI as a lower-case "sip:…", every other number
# as E.164 (campaigns.numbers), so the prefix tells them apart.
KIND_SQL = "CASE WHEN left(number, 4) = 'sip:' THEN 'sip' ELSE 'tel' END"

_DESTINATION_KINDS: dict[str, frozenset[str]] = {}


def register_destination_kinds(provider: str, kinds: Iterable[str]) -> None:
    """Declare what a provider dials (called by the adapters' registry)."""
    chosen = frozenset(kinds)
    if unknown := chosen - KIND_NAMES.keys():
        raise ValueError(f"{provider}: unknown destination kinds {sorted(unknown)} (known: tel, sip)")
    _DESTINATION_KINDS[provider] = chosen


def destination_kinds(provider: str | None) -> frozenset[str] | None:
    """The kinds `provider` dials, or None when it is not known here (nothing is refused then)."""
    return _DESTINATION_KINDS.get(provider or "")


def destination_kind(number: str) -> str:
    """"sip" for a stored SIP URI, else "tel" (the same reading as KIND_SQL)."""
    return SIP if number[:4] == "sip:" else TEL


def cannot_dial(provider: str, kinds: frozenset[str], kind: str) -> str | None:
    """Why `provider` (dialing `kinds`) cannot dial a destination of `kind`, or None when it can:
    e.g. "tryvox dials only E.164 numbers, not SIP URIs"."""
    if kind in kinds:
        return None
    dialed = " and ".join(KIND_NAMES[k] for k in sorted(kinds)) or "no destination at all"
    return f"{provider} dials only {dialed}, not {KIND_NAMES[kind]}"
