"""Reading an uploaded CSV as a stream of rows: encoding, delimiter, header, phone column, limits.

Memory stays constant whatever the file size: bytes are decoded incrementally, one physical line at a
time (never longer than max_line_bytes), and rows are yielded one by one with their physical line number
(the header is line 1). Anything that makes the whole file unusable raises BadInputFile with a reason.

Encodings: a UTF-8 or UTF-16 (LE/BE) byte-order mark decides; without one the first 64 KiB are tried as
UTF-8, and if they are not UTF-8 the file is read as cp1252. A UTF-8 file with a stray cp1252 byte later on
is read with that byte as cp1252 rather than refused (mixed exports are common).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import BinaryIO

from campaigns.errors import BadInputFile

HEAD_BYTES = 64 * 1024
SNIFF_LINES = 50
DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
# Names a phone column goes by, best first; compared after lower-casing and turning spaces/dashes into _.
PHONE_COLUMN_NAMES = ("phone", "phone_number", "phonenumber", "number", "to", "destination", "msisdn",
                      "mobile", "mobile_number", "mobile_phone", "cell", "cell_phone", "cellphone",
                      "telephone", "telephone_number", "tel", "contact_number", "phone_no")
TIMEZONE_COLUMN_NAMES = ("timezone", "time_zone", "tz")
_LOOKS_LIKE_NUMBER = re.compile(r"\s*(?:\+?[\d\s().\-/]{7,}|sip:\S+)\s*", re.IGNORECASE)
_CP1252_FALLBACK = "dialer-cp1252-fallback"
# Stands for a byte no codec could read: a noncharacter, so the line holding it is found and named.
UNDECODABLE = "\uffff"


def _decode_as_cp1252(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: bytes that are not UTF-8 are read as cp1252, else marked UNDECODABLE."""
    assert isinstance(exc, UnicodeDecodeError)
    chunk = exc.object[exc.start:exc.end]
    try:
        return chunk.decode("cp1252"), exc.end
    except UnicodeDecodeError:
        return UNDECODABLE, exc.start + 1


codecs.register_error(_CP1252_FALLBACK, _decode_as_cp1252)


@dataclass(frozen=True)
class CsvLimits:
    """Limits past which a file is refused whole (Settings.max_rows, max_field_bytes, max_line_bytes)."""

    max_rows: int = 5_000_000
    max_field_bytes: int = 4096
    max_line_bytes: int = 65536


@dataclass(frozen=True)
class CsvLayout:
    """What was learned from the head of the file."""

    encoding: str
    delimiter: str
    header: tuple[str, ...]
    phone_index: int
    timezone_index: int | None

    @property
    def phone_column(self) -> str:
        return self.header[self.phone_index]


class _CountingReader(io.RawIOBase):
    """The source's bytes behind an already-read head, counting what has been consumed."""

    def __init__(self, head: bytes, source: BinaryIO) -> None:
        self._head = memoryview(head)
        self._source = source
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
        else:
            data = self._source.read(len(buffer))
            n = len(data)
            buffer[:n] = data
        self.bytes_read += n
        return n


def _read_head(source: BinaryIO) -> bytes:
    head = b""
    while len(head) < HEAD_BYTES:
        data = source.read(HEAD_BYTES - len(head))
        if not data:
            break
        head += data
    return head


def detect_encoding(head: bytes) -> tuple[str, str]:
    """(codec, error handler) for a file starting with these bytes; BadInputFile if binary or undecodable."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "strict"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "strict"
    if b"\x00" in head:
        raise BadInputFile("binary_content", "the file contains NUL bytes: it is binary (or UTF-16 without a "
                                             "byte-order mark), not a CSV text file")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8", _CP1252_FALLBACK
    except UnicodeDecodeError:
        pass
    try:
        head.decode("cp1252")
    except UnicodeDecodeError as exc:
        byte = head[exc.start]
        raise BadInputFile("undecodable", f"the file is neither UTF-8 nor cp1252 text (byte 0x{byte:02x} at "
                                          f"offset {exc.start})") from None
    return "cp1252", _CP1252_FALLBACK


def _check_not_binary(text: str) -> None:
    """Refuse text with many control characters: a binary file that happened to decode."""
    controls = sum(1 for ch in text if ch < " " and ch not in "\t\r\n\f")
    if text and controls > max(2, len(text) // 100):
        raise BadInputFile("binary_content", f"the file starts with {controls} control characters in "
                                             f"{len(text)}: it is binary, not a CSV text file")


def _normal_name(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _clean_header(fields: list[str]) -> tuple[str, ...]:
    """Column names stripped; blanks named column_N; repeats suffixed _2, _3 so variables keep every value."""
    names: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(fields, start=1):
        name = raw.strip().lstrip("\ufeff") or f"column_{i}"
        base, n = name, 1
        while name in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        names.append(name)
    return tuple(names)


def find_phone_column(header: tuple[str, ...], phone_column: str | None) -> int:
    """Index of the phone column: the one named, else the first known name; BadInputFile if none."""
    normal = [_normal_name(name) for name in header]
    if phone_column is not None:
        wanted = _normal_name(phone_column)
        if wanted in normal:
            return normal.index(wanted)
        raise BadInputFile("no_phone_column", f"no column named {phone_column!r} on line 1; the columns are: "
                                              f"{', '.join(header)}")
    for candidate in PHONE_COLUMN_NAMES:
        if candidate in normal:
            return normal.index(candidate)
    if any(_LOOKS_LIKE_NUMBER.fullmatch(name) for name in header):
        raise BadInputFile("no_header", f"line 1 looks like data ({', '.join(header)}), not a header: the "
                                        "first line must name the columns, e.g. phone,first_name")
    raise BadInputFile("no_phone_column", f"no phone column found on line 1 (looked for "
                                          f"{', '.join(PHONE_COLUMN_NAMES[:10])} …; or pass --phone-column); "
                                          f"the columns are: {', '.join(header)}")


def find_timezone_column(header: tuple[str, ...], phone_index: int) -> int | None:
    normal = [_normal_name(name) for name in header]
    for candidate in TIMEZONE_COLUMN_NAMES:
        if candidate in normal and normal.index(candidate) != phone_index:
            return normal.index(candidate)
    return None


def sniff_delimiter(lines: list[str]) -> str:
    """The delimiter among , ; tab | that splits the header into most fields, with rows agreeing with it."""
    best, best_score = ",", (0.0, 0)
    for delimiter in DELIMITERS:
        rows = [row for row in csv.reader(lines, delimiter=delimiter) if any(row)]
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        agreeing = sum(1 for row in rows if len(row) == width) / len(rows)
        score = (agreeing, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


class CsvStream:
    """An open CSV: `layout` from its head, then iterate for (line_no, fields) of each data row."""

    def __init__(self, source: BinaryIO, *, phone_column: str | None = None,
                 limits: CsvLimits | None = None) -> None:
        self.limits = limits or CsvLimits()
        head = _read_head(source)
        if not head.strip(b" \t\r\n\xef\xbb\xbf\xff\xfe\x00"):
            raise BadInputFile("empty_file", "the file is empty")
        encoding, errors = detect_encoding(head)
        self._counter = _CountingReader(head, source)
        self._text = io.TextIOWrapper(io.BufferedReader(self._counter, 1 << 16), encoding=encoding,
                                      errors=errors, newline="")
        self._line_no = 0
        lines = self._physical_lines()
        head_lines = self._head_lines(lines)
        _check_not_binary("".join(head_lines))
        delimiter = sniff_delimiter(head_lines)
        self._reader = csv.reader(chain(head_lines, lines), delimiter=delimiter)
        self._rows_before_header = 0
        header_fields = self._first_row()
        header = _clean_header(header_fields)
        phone_index = find_phone_column(header, phone_column)
        timezone_index = find_timezone_column(header, phone_index)
        self.layout = CsvLayout(encoding=encoding, delimiter=delimiter, header=header,
                                phone_index=phone_index, timezone_index=timezone_index)

    @property
    def bytes_read(self) -> int:
        """Bytes taken from the source so far (read ahead of the rows by at most a buffer)."""
        return self._counter.bytes_read

    def _head_lines(self, lines: Iterator[str]) -> list[str]:
        head: list[str] = []
        size = 0
        for line in lines:
            head.append(line)
            size += len(line)
            if len(head) >= SNIFF_LINES or size >= HEAD_BYTES:
                break
        return head

    def _physical_lines(self) -> Iterator[str]:
        """Lines as read, each checked for length and NUL; counts physical lines for the row numbers."""
        limit = self.limits.max_line_bytes
        readline = self._text.readline
        try:
            while True:
                line = readline(limit + 1)
                if not line:
                    return
                self._line_no += 1
                if len(line) > limit // 4 and len(line.rstrip("\r\n").encode()) > limit:
                    raise BadInputFile("line_too_long", f"line {self._line_no} is longer than {limit} bytes; "
                                                        "is this a CSV file?")
                if "\x00" in line:
                    raise BadInputFile("binary_content", f"line {self._line_no} contains a NUL character: "
                                                         "the file is binary, not a CSV text file")
                if UNDECODABLE in line:
                    raise BadInputFile("undecodable", f"line {self._line_no} has bytes that are not "
                                                      f"{self._text.encoding} text")
                yield line
        except UnicodeDecodeError as exc:
            raise BadInputFile("undecodable", f"near line {self._line_no + 1}: cannot be decoded as "
                                              f"{self._text.encoding} ({exc.reason})") from None

    def _first_row(self) -> list[str]:
        """The header: the first row that is not blank."""
        for row in self._reader:
            if any(field.strip() for field in row):
                return row
        raise BadInputFile("no_header", "the file has no header row (only blank lines)")

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        limits = self.limits
        field_chars = limits.max_field_bytes // 4  # a field this short cannot be over the limit in UTF-8
        header = self.layout.header
        rows = 0
        reader = self._reader
        line_after = reader.line_num
        try:
            for fields in reader:
                line_no, line_after = line_after + 1, reader.line_num
                if not any(fields):
                    continue  # blank lines and lines of bare delimiters carry nothing
                rows += 1
                if rows > limits.max_rows:
                    raise BadInputFile("too_many_rows", f"more than {limits.max_rows} rows (line {line_no}); "
                                                        "split the file")
                if max(map(len, fields)) > field_chars:
                    self._check_field_sizes(line_no, fields, header)
                yield line_no, fields
        except csv.Error as exc:
            raise BadInputFile("field_too_long" if "field limit" in str(exc) else "undecodable",
                               f"line {reader.line_num}: {exc}") from None
        if rows == 0:
            raise BadInputFile("empty_file", "the file has a header but no data rows")

    def _check_field_sizes(self, line_no: int, fields: list[str], header: tuple[str, ...]) -> None:
        limit = self.limits.max_field_bytes
        for i, value in enumerate(fields):
            size = len(value.encode())
            if size > limit:
                column = header[i] if i < len(header) else f"field {i + 1}"
                raise BadInputFile("field_too_long", f"line {line_no}, column {column!r}: {size} bytes, over "
                                                     f"the {limit}-byte limit")
