"""The part of a Prometheus exposition an operator or viewer key may read: the series of its own accounts.

/metrics serves the whole deployment to the scraper (DIALER_METRICS_TOKEN or an admin key). A key scoped to
some accounts gets only the samples labelled with one of those accounts (`account="<id>"`): its campaigns'
calls, its budgets, its 429s. Series with no account label (queue depths, callback backlog, process
figures) describe every tenant at once, so they are left out. Pure: text in, text out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

ACCOUNT_LABEL = "account"


class _Families:
    """A collector that yields families already read (what generate_latest renders)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _in_scope(families: Iterable[Metric], account_ids: frozenset[int]) -> Iterator[Metric]:
    allowed = {str(account_id) for account_id in account_ids}
    for family in families:
        samples = [s for s in family.samples if s.labels.get(ACCOUNT_LABEL) in allowed]
        if samples:
            family.samples = samples
            yield family


def exposition_for_accounts(exposition: bytes, account_ids: frozenset[int]) -> bytes:
    """`exposition` (Prometheus text format) keeping only the samples of `account_ids`."""
    families = text_string_to_metric_families(exposition.decode("utf-8"))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(_in_scope(families, account_ids)))
    return generate_latest(registry)
