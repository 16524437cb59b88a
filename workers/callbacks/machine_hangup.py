"""Hang up on a machine where the carrier reports detection in a callback of its own (Bandwidth's
asynchronous machineDetectionComplete) and the campaign's machine_detection is "hangup": nothing else ends
such a call, and the machine would hear the whole message.

How that callback can end the call is not on the seed (Bandwidth's Create Call page has no machine detection).
Bandwidth's webhook page says to send Update Call; its voicemail-detection guide says the application "can
respond with instructions". Both readings are followed, and the simulator has a mode for each
(docs/PROVIDERS.md, Bandwidth): the callback is answered with <Hangup/>, and once that answer has gone the
adapter's hang-up request is sent (in the API's threadpool, on the process's shared client,
workers.providers.http.shared_client). Whichever ends the call first, the other finds it ended (404: nothing
to do). Either way the attempt's outcome is `machine`, from the
stored callback.
"""

from __future__ import annotations

import logging
import uuid

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from campaigns.call_options import machine_detection_mode
from campaigns.states import Outcome
from workers.callbacks.answer_documents import hangup_document
from workers.providers.base import ProviderAdapter
from workers.providers.calls import AccountCredentials, CallbackEvent
from workers.providers.errors import ProviderError
from workers.providers.http import shared_client

log = logging.getLogger(__name__)

def hang_up_machine(
    adapter: ProviderAdapter, account: AccountCredentials, request_uuid: str | None, call_uuid: str | None
) -> bool:
    """Ask the carrier to end the call; True if it took the request. A failure is logged, never raised: the
    callback is stored and answered already, and the outcome is `machine` whether or not the line drops."""
    call = call_uuid or request_uuid
    try:
        taken = adapter.hang_up(shared_client(), account, request_uuid, call_uuid)
    except (ProviderError, httpx.HTTPError) as exc:
        log.warning("%s: could not hang up machine-answered call %s: %s", account.provider, call, exc)
        return False
    if not taken:
        log.info("%s: machine-answered call %s had already ended", account.provider, call)
    return taken


def hangs_up_on_machine(event: CallbackEvent, options: dict[str, object]) -> bool:
    """A machine answered and the campaign asked to hang up on machines."""
    if event.outcome != Outcome.MACHINE:
        return False
    try:
        return machine_detection_mode(options) == "hangup"
    except ValueError:  # refused when set; a hand-edited row just does not hang up
        return False


async def acknowledge_machine(
    request: Request,
    adapter: ProviderAdapter,
    account: AccountCredentials,
    event: CallbackEvent,
    batch_id: uuid.UUID | None,
) -> Response:
    """The answer to a stored machine-detection callback: the adapter's ack, or on a "hangup" campaign's
    machine <Hangup/> with the hang-up request sent after it."""
    script = await request.app.state.scripts.get(request, account.account_id, batch_id)
    if not hangs_up_on_machine(event, script.options):
        return Response(status_code=adapter.traits.callbacks.ack_status)
    media_type, document = hangup_document(adapter.traits.kind)
    background = None
    if adapter.traits.api.has_hangup:
        background = BackgroundTask(hang_up_machine, adapter, account, event.request_uuid, event.call_uuid)
    return Response(document, media_type=media_type, background=background)
