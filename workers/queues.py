"""The Celery queues the engine's tasks run on: separate queues, so a backlog of one never delays the
others. Named here, below every wing, because the metrics read their depths as well as the app routing to
them."""

from __future__ import annotations

DIAL_QUEUE = "dial"  # dial-chunk tasks: the hot path
RESULTS_QUEUE = "results"  # applying stored callbacks (the safety net behind the API's own applier)
HOUSEKEEPING_QUEUE = "housekeeping"  # dispatcher tick, reaper, scheduled runs

ALL_QUEUES = (DIAL_QUEUE, RESULTS_QUEUE, HOUSEKEEPING_QUEUE)
