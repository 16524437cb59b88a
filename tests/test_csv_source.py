"""Reading uploaded CSVs: encodings, delimiters, header and phone column, limits, line numbers."""

from __future__ import annotations

import io

import pytest

from campaigns.csv_source import CsvLimits, CsvStream
from campaigns.errors import BadInputFile


def read(data: bytes, **kwargs: object) -> tuple[CsvStream, list[tuple[int, list[str]]]]:
    stream = CsvStream(io.BytesIO(data), **kwargs)  # type: ignore[arg-type]
    return stream, list(stream)


def refusal(data: bytes, **kwargs: object) -> BadInputFile:
    with pytest.raises(BadInputFile) as info:
        read(data, **kwargs)
    return info.value


TEXT = "phone,name\n+14155552671,Zoë\n+442079460018,Renée\n"


@pytest.mark.parametrize(("data", "encoding"), [
    (TEXT.encode("utf-8"), "utf-8"),
    (b"\xef\xbb\xbf" + TEXT.encode("utf-8"), "utf-8-sig"),
    (TEXT.encode("utf-16"), "utf-16"),  # with its BOM, native order
    (b"\xff\xfe" + TEXT.encode("utf-16-le"), "utf-16"),
    (b"\xfe\xff" + TEXT.encode("utf-16-be"), "utf-16"),
    (TEXT.encode("cp1252"), "cp1252"),
])
def test_encodings_are_detected_and_decoded(data: bytes, encoding: str) -> None:
    stream, rows = read(data)
    assert stream.layout.encoding == encoding
    assert stream.layout.header == ("phone", "name")  # no BOM left on the first name
    assert rows == [(2, ["+14155552671", "Zoë"]), (3, ["+442079460018", "Renée"])]


def test_stray_cp1252_byte_after_utf8_head_is_read_as_cp1252() -> None:
    head = "phone,name\n" + "".join(f"+1415555{i:04d},Zoë\n" for i in range(5000))
    data = head.encode() + "+14155550000,Caf\xe9\n".encode("cp1252")
    stream, rows = read(data)
    assert stream.layout.encoding == "utf-8"
    assert rows[-1] == (5002, ["+14155550000", "Café"])


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed(delimiter: str) -> None:
    note = '"a, b; c | d"' if delimiter != "\t" else "a, b; c | d"  # other delimiters inside a field
    text = delimiter.join(["phone", "first name", "note"]) + "\n"
    text += delimiter.join(["+14155552671", "Ann", note]) + "\n"
    text += delimiter.join(["+442079460018", "Bo", "x"]) + "\n"
    stream, rows = read(text.encode())
    assert stream.layout.delimiter == delimiter
    assert rows[0] == (2, ["+14155552671", "Ann", "a, b; c | d"])


def test_single_column_file_is_read() -> None:
    stream, rows = read(b"Phone\n+14155552671\n+442079460018\n")
    assert stream.layout.header == ("Phone",)
    assert [line for line, _ in rows] == [2, 3]


@pytest.mark.parametrize(("header", "column"), [
    ("name,Phone Number,x", "Phone Number"),
    ("name,MSISDN", "MSISDN"),
    ("to,name", "to"),
    ("Mobile,name", "Mobile"),
    ("name,tel", "tel"),
])
def test_phone_column_is_found_by_name(header: str, column: str) -> None:
    data = f"{header}\n".encode()
    data += b",".join(b"+14155552671" if h == column else b"v" for h in header.split(",")) + b"\n"
    stream, _ = read(data)
    assert stream.layout.phone_column == column


def test_phone_column_can_be_named_case_insensitively() -> None:
    stream, _ = read(b"home,work\n+14155552671,+442079460018\n", phone_column="WORK")
    assert stream.layout.phone_index == 1


def test_physical_line_numbers_count_blank_and_multiline_rows() -> None:
    data = b'phone,note\n+14155552671,"two\nlines"\n\n,\n+442079460018,x\r\n+4930901820,y'
    _, rows = read(data)
    assert [line for line, _ in rows] == [2, 6, 7]
    assert rows[0][1] == ["+14155552671", "two\nlines"]


def test_timezone_column_is_found() -> None:
    stream, _ = read(b"phone,Time Zone\n+14155552671,Europe/Paris\n")
    assert stream.layout.timezone_index == 1


def test_duplicate_and_blank_header_names_are_kept_apart() -> None:
    stream, _ = read(b"phone,name,name,\n+14155552671,a,b,c\n")
    assert stream.layout.header == ("phone", "name", "name_2", "column_4")


@pytest.mark.parametrize(("data", "reason", "words"), [
    (b"", "empty_file", "empty"),
    (b"\n\r\n  \n", "empty_file", "empty"),
    (b"\xef\xbb\xbf", "empty_file", "empty"),
    (b"phone,name\n", "empty_file", "no data rows"),
    (b"phone,name\n\n,\n", "empty_file", "no data rows"),
    (b"+14155552671,Ann\n+442079460018,Bo\n", "no_header", "+14155552671"),
    (b"name,city\nAnn,Paris\n", "no_phone_column", "name, city"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary_content", "NUL"),
    (bytes(range(1, 32)) * 40, "binary_content", "control characters"),
    (b"phone\n\x81\x8d\x8f\x90\x9d\n", "undecodable", "neither UTF-8 nor cp1252"),
])
def test_bad_files_are_refused_whole_with_a_reason(data: bytes, reason: str, words: str) -> None:
    error = refusal(data)
    assert error.reason == reason
    assert words in str(error)


def test_named_phone_column_missing_lists_the_columns() -> None:
    error = refusal(b"phone,name\n+14155552671,Ann\n", phone_column="mobile")
    assert error.reason == "no_phone_column"
    assert "'mobile'" in str(error) and "phone, name" in str(error)


def test_nul_after_the_head_is_refused_with_its_line() -> None:
    data = b"phone,name\n" + b"+14155552671,Ann\n" * 5000 + b"+14155552671,A\x00n\n"
    error = refusal(data)
    assert (error.reason, "line 5002" in str(error)) == ("binary_content", True)


def test_undecodable_byte_after_the_head_is_refused_with_its_line() -> None:
    data = b"phone,name\n" + b"+14155552671,Ann\n" * 5000 + b"+14155552671,\x81\n"
    error = refusal(data)
    assert error.reason == "undecodable"
    assert "line 5002" in str(error)


def test_line_over_the_limit_is_refused_with_its_line() -> None:
    data = b"phone,note\n+14155552671,ok\n+14155552671," + b"x" * 300 + b"\n"
    error = refusal(data, limits=CsvLimits(max_line_bytes=200))
    assert error.reason == "line_too_long"
    assert "line 3" in str(error)


def test_field_over_the_limit_is_refused_with_its_line_and_column() -> None:
    data = b"phone,note\n+14155552671,ok\n+14155552671," + "é".encode() * 60 + b"\n"
    error = refusal(data, limits=CsvLimits(max_field_bytes=100))
    assert error.reason == "field_too_long"
    assert "line 3" in str(error) and "'note'" in str(error) and "120 bytes" in str(error)


def test_rows_over_the_limit_are_refused() -> None:
    data = b"phone\n" + b"+14155552671\n" * 4
    _, rows = read(data, limits=CsvLimits(max_rows=4))
    assert len(rows) == 4
    error = refusal(data + b"+14155552671\n", limits=CsvLimits(max_rows=4))
    assert error.reason == "too_many_rows"
    assert "line 6" in str(error)


def test_bytes_read_counts_the_source() -> None:
    data = TEXT.encode() * 1
    stream, _ = read(data)
    assert stream.bytes_read == len(data)
