"""One module per provider; adding a provider is one module plus one line here."""

from __future__ import annotations

from simulator.providers.bandwidth import BandwidthProvider
from simulator.providers.base import Provider
from simulator.providers.plivo import PlivoProvider
from simulator.providers.tryvox import TryVoxProvider
from simulator.providers.vobiz import VobizProvider
from simulator.providers.voipbin import VoipbinProvider

PROVIDER_CLASSES: dict[str, type[Provider]] = {
    "plivo": PlivoProvider,
    "vobiz": VobizProvider,
    "tryvox": TryVoxProvider,
    "voipbin": VoipbinProvider,
    "bandwidth": BandwidthProvider,
}

__all__ = ["PROVIDER_CLASSES", "Provider"]
