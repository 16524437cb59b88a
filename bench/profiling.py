"""Sampling profiles of a benchmark's live processes with py-spy, one file per process and stretch.

    with profiled({"worker0": pid, "api": api_pid}, Path("bench/out/profiles"), "200cps"):
        ...the scenario...
    # bench/out/profiles/200cps-worker0.txt: collapsed stacks ("frame;frame;frame count" per line),
    # for flamegraph.pl or speedscope, or to grep for where the time goes.

py-spy attaches to a running process (it needs ptrace: root, or CAP_SYS_PTRACE) and samples it from outside
without stopping it (`--nonblocking`); stopped with SIGINT, it writes what it has. It costs CPU on the same
cores, so a profiled run's figures are not the run's figures: profile in a run of its own.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

PY_SPY = Path(sys.executable).parent / "py-spy"
RATE_HZ = 100


@contextmanager
def profiled(pids: Mapping[str, int], directory: Path, prefix: str) -> Iterator[list[Path]]:
    """py-spy on each named process for the block; the profile files it wrote (one per process)."""
    directory.mkdir(parents=True, exist_ok=True)
    outputs: list[Path] = []
    spies: list[subprocess.Popen[bytes]] = []
    for name, pid in pids.items():
        output = directory / f"{prefix}-{name}.txt"
        spies.append(subprocess.Popen(
            [str(PY_SPY), "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--nonblocking",
             "--format", "raw", "--output", str(output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        outputs.append(output)
    try:
        yield outputs
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
