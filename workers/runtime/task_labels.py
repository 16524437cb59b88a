"""How our tasks look in Flower and the logs: a name and arguments that say what the task is, so Flower's
search box finds a campaign's work (type `campaign=12`).

Celery's `shadow` replaces the task name in events (Flower's Name column) and `argsrepr` replaces the
argument list (the Args column), without changing what the worker runs or receives."""

from __future__ import annotations

from typing import Any

SHOWN_IDS = 3  # destination ids shown at each end of a chunk's list


def dial_chunk_options(
    campaign_id: int, destination_ids: list[int], account_id: int | None = None
) -> dict[str, Any]:
    """apply_async options naming a dial chunk: `dial_chunk campaign=12 destinations=40` (and `account=3`
    on `argsrepr` when the dispatcher named the account)."""
    count = len(destination_ids)
    ids = destination_ids
    shown = (
        ",".join(map(str, ids))
        if count <= 2 * SHOWN_IDS
        else (",".join(map(str, ids[:SHOWN_IDS])) + ",…," + ",".join(map(str, ids[-SHOWN_IDS:])))
    )
    return {
        "shadow": f"dial_chunk campaign={campaign_id} destinations={count}",
        "argsrepr": f"campaign={campaign_id} destinations={count} ids=[{shown}]"
                    + (f" account={account_id}" if account_id is not None else ""),
    }
