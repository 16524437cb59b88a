"""What a carrier's answer to a call-creation request means, in our words. Nothing above an adapter
knows a provider's status codes; the dialer acts on these types (docs/DESIGN.md, "Errors").

ProviderError
├── Throttled          429 or a carrier-side limit: give the tokens/slot back, back off, not an attempt
├── Rejected           400: this destination or body is invalid; attempt failed, no retry
│   └── Refused        the adapter's own guard refused the request before sending it: failed the same way
├── AuthFailed         401/403/404: credentials or account wrong; pause the campaign
├── PaymentRequired    402: balance too low; pause the campaign
├── Transient          nothing was placed (no connection, 503 + Retry-After from the limiter); retry
└── Ambiguous          sent with no answer, or a 5xx: the call may be live; settled by evidence
                       (callbacks, status lookup) or, when its evidence window closes with none, never placed
"""

from __future__ import annotations


class ProviderError(Exception):
    """A call-creation request did not succeed; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Throttled(ProviderError):
    """The carrier refused for rate or concurrency; `retry_after` in seconds when it said."""

    def __init__(self, message: str, *, status: int | None = 429, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class Rejected(ProviderError):
    """The carrier refused this destination or body (400)."""


class Refused(Rejected):
    """The adapter refused to build the request (e.g. a campaign's `extra` that would connect the call on):
    nothing was sent, and the attempt fails as for a 400."""


class AuthFailed(ProviderError):
    """Credentials, account id or endpoint are wrong (401, 403, 404)."""


class PaymentRequired(ProviderError):
    """The account's balance is too low (402)."""


class Transient(ProviderError):
    """Nothing was placed (connect error, timeout before sending, 503 with Retry-After); safe to retry
    later, not before `retry_after` seconds when the carrier said."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class Ambiguous(ProviderError):
    """The request was sent but no usable answer came (timeout, dropped connection, 5xx): the call may be
    live. Never redial blindly."""
