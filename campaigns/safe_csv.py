"""The one CSV writer for every export (results, rejects, DNC lists): every cell is safe to open in a
spreadsheet.

Text starting with = + - @, a tab or a carriage return (a formula to Excel, LibreOffice or Sheets, whatever
follows) gets a leading apostrophe, unless it is a plain number such as +12125550100 (E.164 stays readable
and harmless, and a DNC export still imports back).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def spreadsheet_safe(value: Any) -> Any:
    """A cell value a spreadsheet will not run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


class SafeCsvWriter:
    """csv.writer whose every cell passes through spreadsheet_safe."""

    def __init__(self, handle: Any) -> None:
        self.writer = csv.writer(handle)

    def writerow(self, row: Iterable[Any]) -> None:
        self.writer.writerow([spreadsheet_safe(cell) for cell in row])
