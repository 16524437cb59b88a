"""Which of a campaign's accounts take its new attempts now (pure): its order, its routing, their circuits.

- failover: the first account in the order whose circuit is closed. A half-open account before it takes
  its probes too, so a primary that recovers is tried and, once it closes, takes everything back.
- split: every closed account, each at the pace of its own budget (the dispatcher claims per account, so
  two 50 CPS accounts dial one campaign at 100 CPS), and half-open ones for their probes.
An open account takes nothing. With no account closed or half-open, nothing is dialed: the campaign waits
(its accounts' cool-downs end, or an operator enables one), it is not paused behind anyone's back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from campaigns.states import CircuitState, Routing


def serving_accounts(order: Sequence[int], circuits: Mapping[int, CircuitState], routing: str) -> list[int]:
    """The accounts of `order` (primary first) that may take new attempts, in order. An account missing from
    `circuits` is closed."""
    def state(account_id: int) -> CircuitState:
        return circuits.get(account_id, CircuitState.CLOSED)

    if routing == Routing.SPLIT:
        return [a for a in order if state(a) != CircuitState.OPEN]
    serving: list[int] = []
    for account_id in order:
        if state(account_id) == CircuitState.HALF_OPEN:
            serving.append(account_id)
        elif state(account_id) == CircuitState.CLOSED:
            serving.append(account_id)
            break
    return serving
