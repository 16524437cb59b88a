"""Write campaigns/data/sample.csv: 10,000 deterministic rows of US/GB/IN/DE numbers, a few invalid and
a few repeated (in another format), with first_name and appointment_date variables.

    python campaigns/data/make_sample.py [--rows 10000] [--seed 7] [--out campaigns/data/sample.csv]
"""

from __future__ import annotations

import argparse
import csv
import random
from datetime import date, timedelta
from pathlib import Path

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

REGIONS = ("US", "US", "US", "GB", "IN", "DE")  # the campaign's default region is US
TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE)
NAMES = ("Ada", "Bo", "Chen", "Dara", "Emeka", "Farah", "Greta", "Hiro", "Ines", "Jonas", "Kavya", "Luis",
         "Maren", "Noor", "Oskar", "Priya", "Quinn", "Rosa", "Sven", "Tariq")
US_AREA_CODES = ("201", "212", "312", "415", "503", "602", "713", "808", "907", "305")
INVALID = ("12345", "n/a", "+1 555 010", "+44 20 7946 001", "phone", "00000000000", "+49 1", "call me",
           "+91 12345", "(999) 000-0000")


def random_valid_number(rng: random.Random, region: str) -> phonenumbers.PhoneNumber:
    """A valid number: the region's example number (or a US area code), the remaining digits at random."""
    example = phonenumbers.example_number_for_type(region, rng.choice(TYPES))
    assert example is not None
    national = str(example.national_number)
    while True:
        prefix = rng.choice(US_AREA_CODES) if region == "US" else national[:-6]
        free = len(national) - len(prefix)
        candidate = prefix + f"{rng.randrange(10**free):0{free}d}"
        number = phonenumbers.parse(f"+{example.country_code}{candidate}")
        if phonenumbers.is_valid_number(number):
            return number


def formatted(rng: random.Random, number: phonenumbers.PhoneNumber) -> str:
    """The number as a person would type it: E.164, international, or national for US numbers."""
    styles = [PhoneNumberFormat.E164, PhoneNumberFormat.INTERNATIONAL]
    if number.country_code == 1:
        styles.append(PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(number, rng.choice(styles))


def sample_rows(rows: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    out: list[list[str]] = []
    numbers: list[phonenumbers.PhoneNumber] = []
    start = date(2025, 1, 6)
    for i in range(rows):
        roll = rng.random()
        if roll < 0.002:
            phone = rng.choice(INVALID)
        elif roll < 0.005 and numbers:
            phone = formatted(rng, rng.choice(numbers))  # a repeat, perhaps written differently
        else:
            number = random_valid_number(rng, rng.choice(REGIONS))
            numbers.append(number)
            phone = formatted(rng, number)
        appointment = start + timedelta(days=rng.randrange(60))
        out.append([phone, NAMES[i % len(NAMES)], appointment.isoformat()])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("sample.csv"))
    args = parser.parse_args(argv)
    with args.out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["phone", "first_name", "appointment_date"])
        writer.writerows(sample_rows(args.rows, args.seed))
    print(f"wrote {args.rows} rows to {args.out}")


if __name__ == "__main__":
    main()
