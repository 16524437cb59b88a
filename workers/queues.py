"""The Celery queues the engine's tasks run on: separate queues, so a backlog of one never delays the
others. Named here, below every wing, because the metrics read their depths as well as the app routing to
them."""

from __future__ import annotations

DIAL_QUEUE = "dial"  # dial-chunk tasks: the hot path
RESULTS_QUEUE = "results"  # applying stored callbacks (the safety net behind the API's own applier)
HOUSEKEEPING_QUEUE = "housekeeping"  # dispatcher tick, reaper, scheduled runs
# Outbound webhook delivery passes: consumed only by `dialer webhooks worker` (its own process or container),
# never by the dial workers, so a receiver that is slow or down holds none of their threads.
WEBHOOKS_QUEUE = "webhooks"

ALL_QUEUES = (DIAL_QUEUE, RESULTS_QUEUE, HOUSEKEEPING_QUEUE)  # what `dialer worker` consumes
DECLARED_QUEUES = (*ALL_QUEUES, WEBHOOKS_QUEUE)
