"""Failover and pooling at the issue's sizes (`make soak`; skipped otherwise): the scenarios of
tests/test_failover.py with 2,000 calls at 50 CPS, the primary failing 10 s in, a 60 s outage and the
default 30 s cool-down (DIALER_SOAK=1 sizes them there)."""

from __future__ import annotations

import pytest

from tests.test_failover import conn, stack  # noqa: F401  (the fixtures)
from tests.test_failover import (
    test_primary_answering_5xx_then_recovering_takes_the_campaign_back as recovering,
)
from tests.test_failover import (
    test_primary_answering_401_fails_over_without_pausing_the_campaign as revoked,
)
from tests.test_failover import (
    test_primary_refusing_connections_fails_over_to_a_backup_of_another_provider as refusing,
)
from tests.test_failover import (
    test_split_routing_dials_over_both_accounts_each_within_its_own_budget as splitting,
)

pytestmark = [pytest.mark.soak, pytest.mark.timeout(3600)]


def test_soak_primary_refusing_connections(stack, conn) -> None:  # noqa: F811
    refusing(stack, conn)


def test_soak_primary_answering_401(stack, conn) -> None:  # noqa: F811
    revoked(stack, conn)


def test_soak_primary_5xx_for_60_s_then_recovering(stack, conn) -> None:  # noqa: F811
    recovering(stack, conn)


def test_soak_split_routing(stack, conn) -> None:  # noqa: F811
    splitting(stack, conn)
