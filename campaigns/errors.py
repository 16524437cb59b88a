"""Errors of the domain, one tree. The CLI and the API turn each into one clear line or a 4xx body.

DialerError
├── ServiceUnavailable      Postgres or Redis cannot be reached
├── NotFound                a campaign, account … that does not exist
├── InvalidRequest          a request that breaks a rule (state, argument)
└── BadInputFile            a CSV refused whole (empty, no header, no phone column, binary, too big)
"""

from __future__ import annotations


class DialerError(Exception):
    """Base of every error the dialer raises on purpose."""


class ServiceUnavailable(DialerError):
    """Postgres or Redis is not reachable; the message says which URL and how to start it."""


class NotFound(DialerError):
    """The named object does not exist."""


class InvalidRequest(DialerError):
    """The request is well-formed but not allowed now (wrong state, bad argument)."""


class BadInputFile(DialerError):
    """The uploaded file cannot be loaded at all; nothing from it was stored."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
