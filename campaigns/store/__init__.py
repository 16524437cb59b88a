"""The store: the one writer of dialing state (destination, call_attempt and call_event rows), its functions
named for the transitions they make; policy elsewhere decides, the store writes (tests/test_single_writer.py
holds every other module to it). It lives in the domain because the loader and the operator's controls write
destinations too, and the domain never imports the engine.

- claims: the dispatcher's claim of due destinations (-> queued) and the expiry of undialed ones;
- dial_store: the dial chunk's reads and moves (queued -> dialing with its attempt row, and back);
- frequency_guard: the frequency caps' per-number locks and check, inside the attempts' transaction;
- attempt_marks: an attempt's marks around its one request (spoken text, sending, ambiguous, sent, opt-out);
- settlements: attempts past their deadline settled, and live destinations without an open attempt moved on;
- event_store: carrier events stored (callbacks by group commit, the carrier's looked-up answers one by one);
- applied_events: what applying a batch of events writes back;
- loading, operator: the loader's inserts, and the operator's runs and cancels.
"""
