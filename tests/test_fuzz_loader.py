"""The CSV reader and row normaliser against files nobody would write on purpose (hypothesis): every
encoding, delimiter and quoting, control characters, huge fields, numbers in every format. Either the file
is refused whole with a reason (BadInputFile) or every row is loaded as a dialable number or rejected with
a reason; nothing else is ever raised, and the COPY text always has its seven columns.

Size: HYPOTHESIS_PROFILE=ci (make test) or soak (make fuzz).
"""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from campaigns.copy_chunks import format_copy_chunk
from campaigns.csv_source import CsvLimits, CsvStream
from campaigns.errors import BadInputFile
from campaigns.numbers import NumberPolicy, RejectReason, RowLayout

LIMITS = CsvLimits(max_rows=500, max_field_bytes=512, max_line_bytes=4096)
REASONS = {r.value for r in RejectReason}

numbers = st.one_of(
    st.sampled_from(["+14155552671", "(415) 555-2671", "415.555.2671", "001 415 555 2671",
                     "+44 20 7946 0018", "4155552671", "+1-900-555-0100", "1e10", "-4155552671", "+", "", " ",
                     "sip:alice@example.com", "sip:", "+99999999999999999999", "٤١٥٥٥٥٢٦٧١",
                     "+1 415 555 2671 ext. 9", "=cmd|'/C calc'!A0"]),
    st.from_regex(r"\+?[0-9 ()./-]{0,25}", fullmatch=True),
    st.text(max_size=30),
)
cells = st.one_of(st.text(max_size=20), st.text(min_size=300, max_size=700),
                  st.sampled_from(["\x00", "\r", "\n", "\"", "\"\"", "\x1b[31m", "=1+1", "\ufeff", "\u2028"]))
encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "cp1252", "latin-1"])
delimiters = st.sampled_from([",", ";", "\t", "|"])
quoting = st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    extra = draw(st.lists(st.text(min_size=1, max_size=10), max_size=3))
    header = ["phone", *extra]
    rows = draw(st.lists(st.tuples(numbers, st.lists(cells, max_size=len(extra) + 1)), max_size=25))
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=draw(delimiters), quoting=draw(quoting),
                        lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])))
    writer.writerow(header)
    for number, rest in rows:
        writer.writerow([number, *rest])
    return buffer.getvalue().encode(draw(encodings), errors="replace")


def _load(data: bytes) -> None:
    try:
        stream = CsvStream(io.BytesIO(data), limits=LIMITS)
        found = stream.layout
        layout = RowLayout.build(found.header, found.phone_index, found.timezone_index, found.delimiter)
        rows = list(stream)
    except BadInputFile as exc:
        assert exc.reason and str(exc), "a refused file must say why"
        return
    text, rejected = format_copy_chunk(rows, layout, NumberPolicy())
    lines = text.split("\n")[:-1]
    assert len(lines) == len(rows)
    loaded = 0
    for line in lines:
        columns = line.split("\t")
        assert len(columns) == 7, line  # COPY would refuse the whole load otherwise
        if columns[5] == "\\N":
            loaded += 1
            assert columns[2].startswith(("+", "sip:")), line
        else:
            assert columns[5] in REASONS, line
    assert loaded + rejected == len(rows)


@given(csv_files())
def test_any_csv_is_loaded_row_by_row_or_refused_with_a_reason(data: bytes) -> None:
    _load(data)


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_are_refused_with_a_reason_or_read(data: bytes) -> None:
    _load(data)
