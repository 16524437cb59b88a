"""Split an account's dialing allowance among its campaigns by weight (pure).

Largest-remainder apportionment, then whatever a campaign cannot use (it has fewer due destinations)
goes to the others, again by weight: a big campaign cannot starve a small one, and nothing is wasted.
"""

from __future__ import annotations

from collections.abc import Mapping


def split_by_weight(allowance: int, weights: Mapping[int, int], demand: Mapping[int, int]) -> dict[int, int]:
    """Shares per campaign id: each <= its demand, sum <= allowance, by weight where contested."""
    shares = {cid: 0 for cid in weights}
    remaining = max(0, allowance)
    active = {cid for cid in weights if demand.get(cid, 0) > 0 and weights[cid] > 0}
    while remaining > 0 and active:
        total_weight = sum(weights[c] for c in active)
        exact = {c: remaining * weights[c] / total_weight for c in active}
        grant = {c: int(exact[c]) for c in active}
        leftover = remaining - sum(grant.values())
        for c in sorted(active, key=lambda c: (exact[c] - grant[c], weights[c], -c), reverse=True)[:leftover]:
            grant[c] += 1
        given = 0
        for c in list(active):
            take = min(grant[c], demand[c] - shares[c])
            shares[c] += take
            given += take
            if shares[c] >= demand[c]:
                active.discard(c)
        remaining -= given
        if given == 0:
            break
    return shares
