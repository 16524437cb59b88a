"""The store: the one writer of dialing state (destination, call_attempt and call_event rows), its
functions named for the transitions they make. It lives in the domain because the loader and the
operator's controls write destinations too, and the domain never imports the engine."""
