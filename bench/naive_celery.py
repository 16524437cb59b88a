"""The baseline the issue asks to compare against: a hand-rolled Celery dialer using Celery's own task
`rate_limit`. Celery enforces it per worker instance, so N workers send N times the rate.

Run by bench/dialing_bench.py: `celery -A bench.naive_celery worker` with BENCH_RATE_LIMIT and BENCH_* set.
"""

from __future__ import annotations

import os

import httpx
from celery import Celery
from kombu import Exchange, Queue

BROKER = os.environ.get("DIALER_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("DIALER_REDIS_PREFIX", "bench") + ":naive:"

app = Celery("naive", broker=BROKER)
app.conf.update(
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    broker_transport_options={"global_keyprefix": PREFIX},
    task_queues=[Queue("naive", Exchange("naive"), routing_key="naive")],
    task_default_queue="naive",
)
_client = httpx.Client(timeout=10.0)
API_USER = "bench-api-user"  # Bandwidth Basic auth takes an API user, never the account id


@app.task(name="naive.place_call", rate_limit=os.environ.get("BENCH_RATE_LIMIT", "20/s"))
def place_call(base_url: str, account_id: str, token: str, application_id: str, number: str) -> int:
    """POST one Bandwidth call; return the status code (429s are simply lost, as in most such scripts)."""
    response = _client.post(
        f"{base_url}/api/v2/accounts/{account_id}/calls",
        auth=(API_USER, token),
        json={
            "from": "+14155550100",
            "to": number,
            "applicationId": application_id,
            "answerUrl": "http://127.0.0.1:9/answer",
        },
    )
    return response.status_code
