"""What a worker or beat logs at each level: WARNING by default (`dialer worker`, `dialer beat`); under
`--loglevel INFO` the lifecycle lines (connected, ready, the metrics port, the beat lock, shutdown) but not a
line per task, which at the dispatcher's one tick a second is thousands an hour; under DEBUG, those too."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import after_setup_logger

# Loggers whose INFO lines are one per task: "Task … received" and "Task … succeeded in …" / "… retry: …".
# Failures are logged at ERROR by the same loggers, and stay.
PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")
BEAT_SEND_LINE = "Scheduler: Sending due task"  # celery.beat's (and redbeat's) line per periodic send


class _DropBeatSends(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno < logging.WARNING and str(record.msg).startswith(BEAT_SEND_LINE))


def quiet_per_task_lines(loglevel: int) -> None:
    """Below DEBUG, drop the per-task INFO lines of the worker and of beat; lifecycle lines stay."""
    if loglevel <= logging.DEBUG:
        return
    for name in PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(max(loglevel, logging.WARNING))
    beat = logging.getLogger("celery.beat")
    if not any(isinstance(f, _DropBeatSends) for f in beat.filters):
        beat.addFilter(_DropBeatSends())


@after_setup_logger.connect
def _quiet_per_task_lines(loglevel: int | None = None, **_: Any) -> None:
    quiet_per_task_lines(loglevel if isinstance(loglevel, int) else logging.WARNING)
