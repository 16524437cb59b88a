"""`make bench`: every benchmark, one after the other, each in its own process and database.

    python -m bench                 # all
    python -m bench loader dialing  # some

Figures and the commands that produced them are recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import os
import subprocess
import sys

BENCHES: dict[str, list[str]] = {
    "loader": ["-m", "bench.loader_bench", "--rows", "1000000"],
    "simulator": ["-m", "bench.simulator_bench", "--calls", "30000", "--concurrency", "128"],
    "dialing": ["-m", "bench.dialing_bench"],
    "callbacks": ["-m", "bench.callbacks_bench", "--calls", "20000", "--concurrency", "64"],
    "precision": ["-m", "bench.precision_bench"],
    "scale": ["-m", "bench.scale_bench"],
}
DATABASES = {
    "loader": "dialer_bench_loader",
    "dialing": "dialer_bench",
    "callbacks": "dialer_bench_callbacks",
    "precision": "dialer_bench_precision",
    "scale": "dialer_bench_scale",
}


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHES)
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}", file=sys.stderr)
        return 2
    failed = []
    for name in chosen:
        env = dict(os.environ)
        if name in DATABASES:
            env["DIALER_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASES[name]}"
        print(f"\n=== {name}: python {' '.join(BENCHES[name])}", flush=True)
        if subprocess.run([sys.executable, *BENCHES[name]], env=env).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
