"""bench.process_cpu measures the CPU a process used over a stretch: checked on real processes that burn a
known amount of CPU time (their own time.process_time), on one that sleeps, and on one that exits mid-way."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.process_cpu import CpuMeter, parse_stat, per_call_ms, read_stat, used_seconds

# Reads a line, burns that many seconds of its own CPU time, prints "done", again; exits on an empty line.
BURNER = """
import sys, time
print("ready", flush=True)
for line in sys.stdin:
    if not line.strip():
        break
    end = time.process_time() + float(line)
    while time.process_time() < end:
        pass
    print("done", flush=True)
"""


@contextmanager
def burner() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def burn(proc: subprocess.Popen[str], seconds: float) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{seconds}\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"


def test_stat_line_is_read_from_the_last_parenthesis() -> None:
    line = "4242 (a (weird) name) S 17 4242 4242 0 -1 4194560 10 0 0 0 150 25 3 4 20 0 1 0 9876 0 0"
    stat = parse_stat(line)
    assert (stat.ppid, stat.utime, stat.stime, stat.starttime) == (17, 150, 25, 9876)


def test_a_process_born_during_the_stretch_counts_from_zero() -> None:
    assert used_seconds({1: 2.0}, {1: 2.5, 2: 0.3}) == 0.5 + 0.3


def test_meter_measures_the_cpu_a_process_burned_and_not_one_that_slept() -> None:
    with burner() as busy, burner() as idle:
        meter = CpuMeter(lambda: {"busy": [busy.pid], "idle": [idle.pid]})
        meter.start()
        burn(busy, 0.6)
        time.sleep(0.2)
        seconds = meter.stop()
    # Clock ticks are 10 ms; the burner's own loop around process_time adds a few ms.
    assert 0.55 <= seconds["busy"] <= 0.75, seconds
    assert seconds["idle"] <= 0.05, seconds
    assert per_call_ms(seconds, 100)["busy"] == round(1000 * seconds["busy"] / 100, 2)


def test_cpu_before_the_start_is_not_counted() -> None:
    with burner() as busy:
        burn(busy, 0.4)
        meter = CpuMeter(lambda: {"busy": [busy.pid]})
        meter.start()
        burn(busy, 0.2)
        seconds = meter.stop()
    assert 0.15 <= seconds["busy"] <= 0.3, seconds


def test_a_process_that_exits_counts_up_to_its_last_sample() -> None:
    with burner() as busy:
        meter = CpuMeter(lambda: {"busy": [busy.pid]})
        meter.start()
        burn(busy, 0.3)
        meter.sample()
        busy.kill()
        busy.wait()
        assert read_stat(busy.pid) is None
        seconds = meter.stop()
    assert 0.25 <= seconds["busy"] <= 0.45, seconds


def test_sampling_follows_a_process_that_joins_the_group_later() -> None:
    members: list[int] = []
    meter = CpuMeter(lambda: {"late": list(members)})
    with meter.sampling(interval=0.05):
        with burner() as late:
            members.append(late.pid)
            burn(late, 0.3)
            time.sleep(0.2)  # a sample after the burn
    # Born during the stretch: its start-up (the interpreter's import time) counts too.
    assert 0.25 <= meter.seconds["late"] <= 0.9, meter.seconds
