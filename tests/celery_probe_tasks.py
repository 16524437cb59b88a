"""The dialer's Celery app plus three probe tasks (one succeeds, one fails, one retries once), for tests that
start a real worker with `-A tests.celery_probe_tasks`."""

from __future__ import annotations

from typing import Any

from workers.runtime.celery_app import app


class ProbeFailure(Exception):
    """Raised by probe.fail."""


@app.task(name="probe.succeed")
def succeed() -> str:
    return "ok"


@app.task(name="probe.fail")
def fail() -> None:
    raise ProbeFailure("as asked")


@app.task(name="probe.retry", bind=True, max_retries=1)
def retry_once(self: Any) -> str:
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return "ok on the second try"
