"""Benchmark of the CSV loader against the floor: Postgres COPYing the same rows already normalised.

    python -m bench.loader_bench [--rows 1000000] [--seed 1] [--workers 0] [--keep]

Generates (once, under bench/data/) a seeded CSV of numbers of several countries in mixed formats, about
2% invalid and 1% repeated, with a few variable columns; loads it with load_campaign_csv into the database
of DIALER_DATABASE_URL; then times COPY of the loaded destinations (exported as COPY text) into
destination for a scratch campaign, rolled back. Prints rows/s, the ratio to the floor and the peak RSS of
this process and its children (the parser pool), sampled every 20 ms.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import threading
import time
from pathlib import Path

import phonenumbers
import psutil
from psycopg import sql

from campaigns.config import get_settings
from campaigns.db import connect, init_database
from campaigns.loader import LoadOptions, LoadProgress, load_campaign_csv

DATA_DIR = Path(__file__).resolve().parent / "data"
REGIONS = ("US", "US", "GB", "IN", "DE", "FR", "BR", "AU")
FIRST_NAMES = ("Ada", "Bo", "Chen", "Dara", "Emeka", "Farah", "Greta", "Hiro", "Ines", "Jonas", "Kavya")


def _prefixes(rng: random.Random, region: str, count: int) -> list[str]:
    """E.164 numbers of the region without their last 4 digits, each prefix of at least one valid number."""
    found: set[str] = set()
    types = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
    attempts = 0
    while len(found) < count and attempts < count * 10:
        attempts += 1
        example = phonenumbers.example_number_for_type(region, rng.choice(types))
        assert example is not None
        national = str(example.national_number)
        keep = 3 if region == "US" else max(1, len(national) - 7)
        digits = national[:keep] + "".join(rng.choice("0123456789") for _ in range(len(national) - keep))
        if region == "US":
            digits = rng.choice("23456789") + digits[1:]
        number = phonenumbers.parse(f"+{example.country_code}{digits}")
        if phonenumbers.is_valid_number(number):
            found.add(f"+{example.country_code}{digits}"[:-4])
    return sorted(found)


def generate_csv(path: Path, rows: int, seed: int) -> None:
    """The bench file: phone,first_name,customer_id,appointment_date; ~2% invalid, ~1% repeats."""
    rng = random.Random(seed)
    pools = {region: _prefixes(rng, region, 3000) for region in sorted(set(REGIONS))}
    recent: list[str] = []
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as out:
        out.write("phone,first_name,customer_id,appointment_date\n")
        lines: list[str] = []
        for i in range(rows):
            roll = rng.random()
            if roll < 0.02:
                phone = rng.choice(("12345", "n/a", "+1 555", "0000000", "+44 12", "call later"))
            elif roll < 0.03 and recent:
                phone = rng.choice(recent)
            else:
                region = rng.choice(REGIONS)
                phone = rng.choice(pools[region]) + f"{rng.randrange(10000):04d}"
                if roll > 0.8:  # some written as people do: +44 20 7946 0018
                    phone = f"{phone[:3]} {phone[3:6]} {phone[6:]}"
                if len(recent) < 1000:
                    recent.append(phone)
                else:
                    recent[rng.randrange(1000)] = phone
            lines.append(f"{phone},{FIRST_NAMES[i % len(FIRST_NAMES)]},C{i:08d},2025-{1 + i % 12:02d}-"
                         f"{1 + i % 28:02d}\n")
            if len(lines) >= 10_000:
                out.write("".join(lines))
                lines.clear()
        out.write("".join(lines))
    tmp.replace(path)


class PeakRss:
    """Samples the resident memory of this process plus all its children until stopped."""

    def __init__(self, interval: float = 0.02) -> None:
        self.peak = 0
        self.parts: list[int] = []  # per process at the peak, this one first
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> tuple[int, list[int]]:
        me = psutil.Process()
        sizes = [me.memory_info().rss]
        for child in me.children(recursive=True):
            try:
                sizes.append(child.memory_info().rss)
            except psutil.Error:
                pass
        return sum(sizes), sizes

    def _run(self) -> None:
        while not self._stop.is_set():
            total, sizes = self._sample()
            if total > self.peak:
                self.peak, self.parts = total, sizes
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def floor_copy_seconds(campaign_id: int, export: Path) -> float:
    """Seconds Postgres takes to COPY the campaign's destinations, already normalised, into destination."""
    with connect(autocommit=True) as conn:
        scratch = conn.execute("INSERT INTO campaign (name, state) VALUES ('bench-floor', 'draft') "
                               "RETURNING id").fetchone()[0]  # type: ignore[index]
        try:
            export_sql = sql.SQL("COPY (SELECT {}::bigint, line_no, number, variables, timezone "
                                 "FROM destination WHERE campaign_id = {} ORDER BY id) TO STDOUT").format(
                sql.Literal(scratch), sql.Literal(campaign_id))
            with export.open("wb") as out, conn.cursor() as cur, cur.copy(export_sql) as copy:
                for block in copy:
                    out.write(block)
            conn.execute("BEGIN")
            started = time.monotonic()
            copy_sql = "COPY destination (campaign_id, line_no, number, variables, timezone) FROM STDIN"
            with export.open("rb") as source, conn.cursor() as cur, cur.copy(copy_sql) as copy:
                while block := source.read(1 << 20):
                    copy.write(block)
            seconds = time.monotonic() - started
            conn.execute("ROLLBACK")
        finally:
            conn.execute("DELETE FROM campaign WHERE id = %s", (scratch,))
            export.unlink(missing_ok=True)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the CSV loader against raw COPY.")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None, help="parser processes (default: settings)")
    parser.add_argument("--keep", action="store_true", help="keep the loaded campaign")
    args = parser.parse_args(argv)

    init_database()
    path = DATA_DIR / f"bench_{args.rows}_{args.seed}.csv"
    if not path.exists():
        started = time.monotonic()
        # In a child process, so the generator's memory does not count in this process's peak RSS.
        spawn = multiprocessing.get_context("spawn")
        child = spawn.Process(target=generate_csv, args=(path, args.rows, args.seed))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"generating {path} failed")
        print(f"generated {path} in {time.monotonic() - started:.1f} s")
    size_mb = path.stat().st_size / 1e6
    phases: dict[str, float] = {}

    def note(progress: LoadProgress) -> None:
        phases.setdefault(progress.phase, time.monotonic())

    started = time.monotonic()
    with PeakRss() as rss:
        report = load_campaign_csv(name=f"bench-{args.rows}", source=path,
                                   options=LoadOptions(workers=args.workers), progress=note)
    load_seconds = time.monotonic() - started
    try:
        floor = floor_copy_seconds(report.campaign_id, DATA_DIR / "floor.copy")
    finally:
        if not args.keep:
            with connect(autocommit=True) as conn:
                conn.execute("DELETE FROM campaign WHERE id = %s", (report.campaign_id,))

    reading = phases.get("finishing", started) - started
    finishing = phases.get("done", time.monotonic()) - phases.get("finishing", started)
    workers = args.workers if args.workers is not None else get_settings().loader_workers
    print(f"file: {path.name} ({size_mb:.1f} MB, {report.rows_total} rows), workers setting {workers}")
    print(f"loaded {report.rows_loaded}, rejected {report.rows_rejected} {report.rejects_by_reason}")
    print(f"load: {load_seconds:.2f} s = {report.rows_total / load_seconds:,.0f} rows/s "
          f"(read+normalise+COPY to staging {reading:.2f} s, dedupe/DNC/insert {finishing:.2f} s)")
    print(f"floor: COPY of the {report.rows_loaded} normalised rows into destination {floor:.2f} s "
          f"= {report.rows_loaded / floor:,.0f} rows/s")
    print(f"ratio load/floor: {load_seconds / floor:.2f}x (target <= 5x)")
    parts = " + ".join(f"{size / 2**20:.0f}" for size in rss.parts)
    print(f"peak RSS (this process + children): {rss.peak / 2**20:.0f} MB = {parts} (target < 300 MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
