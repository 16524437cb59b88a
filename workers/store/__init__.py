"""Store: the one writer of dialing state (destination, call_attempt and call_event rows)."""
