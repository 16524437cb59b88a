"""`make bench`: every benchmark, one after the other, each in its own process and database.

    python -m bench                            # all
    python -m bench loader dialing             # some
    python -m bench precision --busy-core      # one, with its own options (`python -m bench.<module> -h`)

The benchmarks of issue 18's targets, each with its options:

    python -m bench precision                  # 20, 200, 500 CPS single-destination, normal priority
    python -m bench precision --busy-core      # the same with one core kept busy beside the stack
    python -m bench precision --priority       # carrier nice -15, sender threads nice -10 (labelled)
    python -m bench occupancy                  # 30 lines, 50 CPS, 3 s calls, 400 calls
    python -m bench postgres-restart           # 1,500 at 50 CPS, the bench database away 2 s, 10 s in
    python -m bench postgres-restart --restart-postgres   # the server restarted (a quiet machine only)
    python -m bench scale --rate 1000          # 100,000 through Plivo bulk
    python -m bench callbacks
    python -m bench console                    # the console's campaigns page: 200 campaigns, one at 100 CPS
    python -m bench split --repeat 3           # split routing over two 50 CPS carriers (issue 23)
    python -m bench split --busy-core          # the same with one core kept busy beside the stack

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
    "occupancy": ["-m", "bench.occupancy_bench"],
    "postgres-restart": ["-m", "bench.postgres_restart_bench"],
    "http-client": ["-m", "bench.http_client_bench"],
    "console": ["-m", "bench.console_bench"],
    "split": ["-m", "bench.split_bench"],
}
DATABASES = {
    "loader": "dialer_bench_loader",
    "dialing": "dialer_bench",
    "callbacks": "dialer_bench_callbacks",
    "precision": "dialer_bench_precision",
    "scale": "dialer_bench_scale",
    "occupancy": "dialer_bench_occupancy",
    "postgres-restart": "dialer_bench_pgrestart",
    "console": "dialer_bench_console",
    "split": "dialer_bench_split",
}


def main(argv: list[str]) -> int:
    # Names first; from the first option on, everything goes to the one benchmark named.
    first_option = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    chosen, options = argv[:first_option] or list(BENCHES), argv[first_option:]
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}", file=sys.stderr)
        return 2
    if options and len(chosen) != 1:
        print(f"options {options} are for one benchmark: name exactly one", file=sys.stderr)
        return 2
    failed = []
    for name in chosen:
        env = dict(os.environ)
        # Local runs against the simulator, said explicitly (unset, the environment is production, which
        # refuses the development key the loader benchmark runs on).
        env.setdefault("DIALER_ENVIRONMENT", "development")
        if name in DATABASES:
            env["DIALER_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASES[name]}"
        command = [*BENCHES[name], *options]
        print(f"\n=== {name}: python {' '.join(command)}", flush=True)
        if subprocess.run([sys.executable, *command], env=env).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
