"""Digit gathering for the opt-out keypress ("press 9 to stop these calls"), per call-control dialect.

An adapter whose answer markup can gather digits declares a `keypress` dialect (its traits' `answer`): how
to wrap the answer document's verbs in the dialect's gather element, pointing at our keypress callback URL,
and how to read the digits out of that callback. Supported: Plivo XML and Vobiz (`<GetDigits>`, form
callback with `Digits`), Bandwidth BXML (`<Gather>`, JSON `gather` event with `digits`, authenticated with
the per-call Basic credentials given as the Gather's username/password). Not supported: TryVox (its seed
documents no VoxML verbs at all) and VoIPbin (its `digits_receive` and `branch` actions are fixed at call
creation and no documented action reports the digits back to us).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from workers.providers.calls import IncomingCallback

GATHER_TIMEOUT_S = 5  # seconds after the message for the key


@dataclass(frozen=True)
class Keypress:
    """The digits a callee pressed, and the ids that find the call's attempt."""

    digits: str
    to: str | None
    call_uuid: str | None
    request_uuid: str | None


class KeypressDialect:
    """One dialect's gather element and keypress callback."""

    def gather(
        self, inner: str, *, action_url: str, digit: str, credentials: tuple[str | None, str | None]
    ) -> str:
        raise NotImplementedError

    def parse(self, callback: IncomingCallback) -> Keypress:
        raise NotImplementedError


class GetDigits(KeypressDialect):
    """Plivo XML (and Vobiz): <GetDigits action=… numDigits=1 validDigits=9>…</GetDigits>; the action URL
    gets the call's usual form parameters plus `Digits`, signed like every other callback."""

    def gather(
        self, inner: str, *, action_url: str, digit: str, credentials: tuple[str | None, str | None]
    ) -> str:
        return (
            f'<GetDigits action={quoteattr(action_url)} method="POST" numDigits="1" '
            f'validDigits={quoteattr(digit)} timeout="{GATHER_TIMEOUT_S}" retries="1" redirect="true">'
            f"{inner}</GetDigits>"
        )

    def parse(self, callback: IncomingCallback) -> Keypress:
        params = callback.params
        digits = params.get("Digits")
        if digits is None:
            raise ValueError("Digits is missing")
        return Keypress(
            digits=digits,
            to=params.get("To"),
            call_uuid=params.get("CallUUID"),
            request_uuid=params.get("RequestUUID") or params.get("ALegRequestUUID"),
        )


class BxmlGather(KeypressDialect):
    """Bandwidth BXML: <Gather gatherUrl=… maxDigits=1 username=… password=…>; the gather event is JSON
    (eventType gather, digits, callId, to)."""

    def gather(
        self, inner: str, *, action_url: str, digit: str, credentials: tuple[str | None, str | None]
    ) -> str:
        username, password = credentials
        auth = ""
        if username and password:
            auth = f" username={quoteattr(username)} password={quoteattr(password)}"
        return (
            f'<Gather gatherUrl={quoteattr(action_url)} gatherMethod="POST" maxDigits="1" '
            f'firstDigitTimeout="{GATHER_TIMEOUT_S}"{auth}>{inner}</Gather>'
        )

    def parse(self, callback: IncomingCallback) -> Keypress:
        try:
            body = json.loads(callback.body or b"{}")
        except ValueError as exc:
            raise ValueError(f"body is not JSON: {exc}") from None
        if not isinstance(body, dict) or "digits" not in body:
            raise ValueError("digits is missing")
        return Keypress(
            digits=str(body["digits"]), to=body.get("to"), call_uuid=body.get("callId"), request_uuid=None
        )
