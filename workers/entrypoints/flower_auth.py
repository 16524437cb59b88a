"""Flower shows every task's arguments and can revoke tasks and shut workers down: outside development it
must not start without basic auth. DIALER_FLOWER_AUTH holds `user:password` (several joined by commas);
it reaches Flower through its own FLOWER_BASIC_AUTH variable, never the command line (visible in `ps`)."""

from __future__ import annotations

from campaigns.errors import InvalidRequest


def flower_basic_auth(environment: str, value: str | None) -> str | None:
    """The basic-auth setting to give Flower, or None in development without one.

    InvalidRequest (the CLI prints it and exits 1) when it is missing outside development or malformed."""
    if not value:
        if environment != "development":
            raise InvalidRequest(
                f"refusing to start Flower without basic auth in environment {environment!r}: set "
                "DIALER_FLOWER_AUTH=user:password (several separated by commas)"
            )
        return None
    for pair in value.split(","):
        user, sep, password = pair.partition(":")
        if not sep or not user.strip() or not password:
            raise InvalidRequest(
                "DIALER_FLOWER_AUTH must be user:password[,user2:password2]; one entry is not"
            )
    return value
