"""Entry point of `dialer simulator` and `python -m simulator`."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence

# A whole test suite can run against a carrier with network-like arrival jitter:
# SIMULATOR_ARRIVAL_JITTER_MS=5,5 make test (every simulator it starts then counts arrivals 0-10 ms late).
JITTER_ENV = "SIMULATOR_ARRIVAL_JITTER_MS"
# "handler" counts arrivals when their handler runs (on uvloop when installed), the behaviour before
# kernel stamps; "kernel" (the default) falls back to it where the platform has no receive stamps.
STAMP_ENV = "SIMULATOR_ARRIVAL_STAMP"


def run_simulator(*, config: str | None, host: str, port: int, speed: float, seed: int,
                  ledger_out: str | None = None, arrival_jitter_ms: str | None = None,
                  arrival_stamp: str = "kernel") -> None:
    """Run the carrier simulator in the foreground until SIGINT/SIGTERM: on the stdlib loop with kernel
    receive stamps where the platform has them, else on uvloop when installed."""
    from simulator import stamping
    from simulator.app import serve
    from simulator.config import load_config, parse_jitter

    if speed <= 0:
        raise ValueError("speed must be positive")
    sim_config = load_config(config, parse_jitter(arrival_jitter_ms) if arrival_jitter_ms else None)
    coro = serve(sim_config, host=host, port=port, speed=speed, seed=seed, ledger_out=ledger_out)
    if arrival_stamp == "kernel" and stamping.supported():
        # uvloop's transports read with recv, which drops the stamps: the stdlib loop, with recvmsg.
        with asyncio.Runner(loop_factory=stamping.StampingEventLoop) as runner:
            runner.run(coro)
        return
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    parser.add_argument("--config", help="JSON file of accounts, limits, outcome mix, faults, callbacks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (printed on start)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="divides call durations and callback backoff")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ledger-out", help="write the ledger and stats as JSON here on exit")
    parser.add_argument("--arrival-jitter-ms", default=os.environ.get(JITTER_ENV) or None,
                        metavar="MEAN,SPREAD",
                        help=f"default network delay before the limiter counts an arrival, uniform in "
                             f"mean ± spread ms (a config's own limiter section wins; env {JITTER_ENV})")
    parser.add_argument("--arrival-stamp", choices=("kernel", "handler"),
                        default=os.environ.get(STAMP_ENV) or "kernel",
                        help=f"count a create request at the kernel's receive time of its bytes (Linux; "
                             f"immune to the simulator's own CPU starvation) or when its handler runs "
                             f"(env {STAMP_ENV})")
    args = parser.parse_args(argv)
    run_simulator(config=args.config, host=args.host, port=args.port, speed=args.speed, seed=args.seed,
                  ledger_out=args.ledger_out, arrival_jitter_ms=args.arrival_jitter_ms,
                  arrival_stamp=args.arrival_stamp)
