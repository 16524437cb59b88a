"""The conditions a benchmark runs under, and the label its rows carry: the priorities of the carrier and of
the workers' sender threads, and whether one core is kept busy beside the stack.

By default everything runs at normal priority, as a user's dry run on one machine would. `--priority`
gives the carrier nice -15 and the sender threads nice -10 (docker-compose.yml's DIALER_SENDER_NICE), so
the carrier stands for one on its own hardware; `--busy-core` runs one normal-priority CPU-bound process
(`python -c 'while True: pass'`) for the whole run, a host that is short of a core.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

PRIORITY_SENDER_NICE = -10  # docker-compose.yml's DIALER_SENDER_NICE
PRIORITY_CARRIER_NICE = -15


@dataclass(frozen=True)
class Conditions:
    sender_nice: int
    carrier_nice: int
    busy_core: bool

    def label(self, carrier_nice: int | None = None) -> str:
        """'normal priority' or 'priority: carrier nice -15, sender nice -10', then ' · busy core'. With
        `carrier_nice`, the value the carrier really got (the OS may refuse a raise)."""
        carrier = self.carrier_nice if carrier_nice is None else carrier_nice
        if self.sender_nice or carrier:
            text = f"priority: carrier nice {carrier}, sender nice {self.sender_nice}"
        else:
            text = "normal priority"
        return text + (" · busy core" if self.busy_core else "")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--priority", action="store_true",
                        help=f"carrier at nice {PRIORITY_CARRIER_NICE}, sender threads at nice "
                             f"{PRIORITY_SENDER_NICE} (default: normal priority, as a user's dry run)")
    parser.add_argument("--sender-nice", type=int, default=None,
                        help="DIALER_SENDER_NICE of the workers, overriding --priority's")
    parser.add_argument("--carrier-nice", type=int, default=None,
                        help="nice value of the simulator, overriding --priority's")
    parser.add_argument("--busy-core", action="store_true",
                        help="run one normal-priority CPU-bound process beside the stack for the whole run")


def from_arguments(args: argparse.Namespace) -> Conditions:
    def pick(given: int | None, prioritised: int) -> int:
        return given if given is not None else prioritised if args.priority else 0

    return Conditions(sender_nice=pick(args.sender_nice, PRIORITY_SENDER_NICE),
                      carrier_nice=pick(args.carrier_nice, PRIORITY_CARRIER_NICE), busy_core=args.busy_core)


@contextmanager
def busy_core(on: bool) -> Iterator[None]:
    """With `on`, one CPU-bound Python process at this process's priority until the block ends."""
    if not on:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()
