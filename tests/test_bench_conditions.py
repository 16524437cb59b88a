"""A benchmark's run conditions (bench.conditions): normal priority unless asked, and every row labelled."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.conditions import Conditions, add_arguments, busy_core, from_arguments
from bench.process_cpu import CpuMeter, read_stat


def _parse(*argv: str) -> Conditions:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_arguments(parser.parse_args(list(argv)))


def test_by_default_everything_runs_at_normal_priority() -> None:
    run = _parse()
    assert (run.sender_nice, run.carrier_nice, run.busy_core) == (0, 0, False)
    assert run.label() == "normal priority"


def test_priority_is_one_option_and_its_rows_say_so() -> None:
    run = _parse("--priority")
    assert (run.sender_nice, run.carrier_nice) == (-10, -15)
    assert run.label() == "priority: carrier nice -15, sender nice -10"
    # The label tells the carrier's real nice value when the OS refused the raise.
    assert run.label(carrier_nice=0) == "priority: carrier nice 0, sender nice -10"


def test_a_busy_core_is_labelled() -> None:
    assert _parse("--busy-core").label() == "normal priority · busy core"
    assert _parse("--priority", "--busy-core", "--sender-nice", "0").label() == (
        "priority: carrier nice -15, sender nice 0 · busy core")


def _spinners() -> list[int]:
    """This process's children running the busy loop."""
    found = []
    for entry in Path("/proc").iterdir():
        stat = read_stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is not None and stat.ppid == os.getpid():
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if b"while True: pass" in cmdline:
                found.append(int(entry.name))
    return found


def test_busy_core_keeps_one_process_spinning_until_the_block_ends() -> None:
    with busy_core(True):
        (spinner,) = _spinners()
        meter = CpuMeter(lambda: {"spinner": [spinner]})
        meter.start()
        time.sleep(0.5)
        assert meter.stop()["spinner"] >= 0.1  # spinning, even on a shared machine
    assert _spinners() == []
    with busy_core(False):
        assert _spinners() == []
