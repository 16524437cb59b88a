"""Dialing: one chunk of claimed destinations, from attempt rows to the request leaving at its booked
instant."""
