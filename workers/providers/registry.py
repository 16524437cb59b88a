"""Which adapter speaks for which provider kind. A new provider is one adapter file plus one line here."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from types import MappingProxyType

from campaigns.accounts import register_provider
from campaigns.destination_kinds import register_destination_kinds
from campaigns.provider_options import OptionSupport, register_option_support
from workers.providers.account_options import check_account_options
from workers.providers.bandwidth import BandwidthAdapter
from workers.providers.base import ProviderAdapter
from workers.providers.plivo import PlivoAdapter
from workers.providers.tryvox import TryVoxAdapter
from workers.providers.vobiz import VobizAdapter
from workers.providers.voipbin import VoipbinAdapter

# Adapters hold no state, so one instance each serves every account and thread.
PROVIDERS: Mapping[str, ProviderAdapter] = MappingProxyType(
    {
        adapter.traits.kind: adapter
        for adapter in (PlivoAdapter(), VobizAdapter(), TryVoxAdapter(), VoipbinAdapter(), BandwidthAdapter())
    }
)

# Every signed-callback nonce header any provider sends: checked for replays and kept with the event.
CALLBACK_NONCE_HEADERS: tuple[str, ...] = tuple(
    dict.fromkeys(h for adapter in PROVIDERS.values() for h in adapter.traits.callbacks.nonce_headers)
)

for _traits in (adapter.traits for adapter in PROVIDERS.values()):  # accounts (domain side) learn them here
    register_provider(
        _traits.kind,
        _traits.default_base_url,
        check_options=partial(check_account_options, _traits),
        takes_answer_url=_traits.answer.takes_answer_url,
    )
    register_destination_kinds(_traits.kind, _traits.options.destination_kinds)
    register_option_support(
        _traits.kind,
        OptionSupport(
            max_ring_timeout_s=_traits.limits.max_ring_timeout_s,
            supported=_traits.options.supported,
            machine_detection_modes=_traits.options.machine_detection_modes,
        ),
    )


def adapter_for(provider: str) -> ProviderAdapter:
    """The adapter for a provider kind ('plivo', 'vobiz', …); ValueError naming the known ones otherwise."""
    try:
        return PROVIDERS[provider]
    except KeyError:
        raise ValueError(f"unknown provider {provider!r}; known: {', '.join(sorted(PROVIDERS))}") from None
