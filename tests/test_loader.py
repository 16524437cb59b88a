"""Loading a campaign from a CSV into the real Postgres: COPY, dedupe, DNC, all-or-nothing."""

from __future__ import annotations

import io
import secrets
from pathlib import Path

import psycopg
import pytest

from campaigns import copy_chunks, loader
from campaigns.config import Settings
from campaigns.errors import BadInputFile, InvalidRequest, NotFound
from campaigns.loader import LoadOptions, LoadProgress, load_campaign_csv

SAMPLE = Path(__file__).resolve().parent.parent / "campaigns" / "data" / "sample.csv"


def unique_name() -> str:
    return f"test-{secrets.token_hex(4)}"


def load(data: bytes, *, settings: Settings | None = None, **options: object) -> loader.LoadReport:
    return load_campaign_csv(name=unique_name(), source=io.BytesIO(data), options=LoadOptions(**options),  # type: ignore[arg-type]
                             settings=settings)


def destinations(db: psycopg.Connection, campaign_id: int) -> list[tuple]:
    return db.execute("SELECT line_no, number, variables, timezone, status FROM destination "
                      "WHERE campaign_id = %s ORDER BY id", (campaign_id,)).fetchall()


def rejects(db: psycopg.Connection, campaign_id: int) -> list[tuple]:
    return db.execute("SELECT line_no, raw_value, reason FROM rejected_row WHERE campaign_id = %s "
                      "ORDER BY line_no", (campaign_id,)).fetchall()


def test_sample_file_loads_as_a_draft_with_every_row_accounted_for(db: psycopg.Connection) -> None:
    report = load_campaign_csv(name=unique_name(), source=SAMPLE)
    assert report.rows_total == 10_000
    assert report.rows_loaded + report.rows_rejected == 10_000
    assert report.rows_loaded > 9_800
    assert set(report.rejects_by_reason) <= {"invalid_number", "not_possible", "duplicate"}
    row = db.execute("SELECT state, rows_total, rows_loaded, rows_rejected FROM campaign WHERE id = %s",
                     (report.campaign_id,)).fetchone()
    assert row == ("draft", 10_000, report.rows_loaded, report.rows_rejected)
    count = db.execute("SELECT count(*), count(DISTINCT number) FROM destination WHERE campaign_id = %s",
                       (report.campaign_id,)).fetchone()
    assert count == (report.rows_loaded, report.rows_loaded)


def test_destinations_keep_file_order_variables_and_zones(db: psycopg.Connection) -> None:
    data = (b"phone,first_name,tz,appointment\n"
            b"+442079460018,Ann,Europe/Paris,2025-01-02\n"
            b"(415) 555-2671,Bo,,2025-01-03\n"
            b"sip:desk@pbx.example.com,Cy,not/a-zone,\n")
    report = load(data, default_timezone="America/New_York")
    assert destinations(db, report.campaign_id) == [
        (2, "+442079460018", {"first_name": "Ann", "tz": "Europe/Paris", "appointment": "2025-01-02"},
         "Europe/Paris", "pending"),
        (3, "+14155552671", {"first_name": "Bo", "tz": "", "appointment": "2025-01-03"},
         "America/Los_Angeles", "pending"),
        (4, "sip:desk@pbx.example.com", {"first_name": "Cy", "tz": "not/a-zone", "appointment": ""},
         "America/New_York", "pending"),
    ]


def test_duplicates_are_rejected_on_their_later_lines(db: psycopg.Connection) -> None:
    data = b"phone\n+14155552671\n+442079460018\n(415) 555-2671\n415.555.2671\n+442079460018\n"
    report = load(data)
    assert [(line, number) for line, number, *_ in destinations(db, report.campaign_id)] == [
        (2, "+14155552671"), (3, "+442079460018")]
    assert rejects(db, report.campaign_id) == [
        (4, "(415) 555-2671", "duplicate"), (5, "415.555.2671", "duplicate"),
        (6, "+442079460018", "duplicate")]
    detail = db.execute("SELECT detail FROM rejected_row WHERE campaign_id = %s AND line_no = 5",
                        (report.campaign_id,)).fetchone()
    assert detail == ("same number as line 2",)
    assert report.rejects_by_reason == {"duplicate": 3}


def test_dnc_numbers_are_rejected_on_every_line(db: psycopg.Connection) -> None:
    dnc = "+12125550143"
    db.execute("INSERT INTO dnc_number (number, reason) VALUES (%s, 'test') ON CONFLICT DO NOTHING", (dnc,))
    try:
        report = load(b"phone,name\n+14155552671,a\n(212) 555-0143,b\n+1 212 555 0143,c\n")
    finally:
        db.execute("DELETE FROM dnc_number WHERE number = %s", (dnc,))
    assert [row[1] for row in destinations(db, report.campaign_id)] == ["+14155552671"]
    assert rejects(db, report.campaign_id) == [(3, "(212) 555-0143", "dnc"), (4, "+1 212 555 0143", "dnc")]
    assert (report.rows_loaded, report.rows_rejected) == (1, 2)


def test_wrong_column_count_rejects_the_row_and_loads_the_rest(db: psycopg.Connection) -> None:
    data = b"phone,name\n+14155552671,a\n+442079460018\n+4930901820,c,extra\n+919876543210,d\n"
    report = load(data)
    assert [row[0] for row in destinations(db, report.campaign_id)] == [2, 5]
    assert rejects(db, report.campaign_id) == [
        (3, "+442079460018", "wrong_column_count"), (4, "+4930901820,c,extra", "wrong_column_count")]


def test_invalid_and_blocked_numbers_are_recorded_with_line_and_raw_value(db: psycopg.Connection) -> None:
    data = b"phone\n12345\nhello\n+1 900 555 0100\n+14155552671\n"
    report = load(data)
    assert rejects(db, report.campaign_id) == [
        (2, "12345", "not_possible"), (3, "hello", "invalid_number"), (4, "+1 900 555 0100", "blocked_type")]
    assert report.rejects_by_reason == {"blocked_type": 1, "invalid_number": 1, "not_possible": 1}


def test_phone_column_option_and_utf16_file_object(db: psycopg.Connection) -> None:
    data = "name;work;home\nZoë;+442079460018;+14155552671\n".encode("utf-16")
    report = load(data, phone_column="home")
    assert report.encoding == "utf-16" and report.delimiter == ";"
    assert destinations(db, report.campaign_id)[0][:3] == (2, "+14155552671",
                                                          {"name": "Zoë", "work": "+442079460018"})


def campaign_count(db: psycopg.Connection, name: str) -> int:
    row = db.execute("SELECT count(*) FROM campaign WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return int(row[0])


def test_failure_midway_leaves_nothing_behind(db: psycopg.Connection) -> None:
    name = unique_name()
    data = b"phone\n" + b"".join(b"+1415555%04d\n" % i for i in range(50))
    with pytest.raises(BadInputFile) as info:
        load_campaign_csv(name=name, source=io.BytesIO(data), settings=Settings(max_rows=40))
    assert info.value.reason == "too_many_rows"
    assert campaign_count(db, name) == 0
    orphans = db.execute("SELECT count(*) FROM destination d LEFT JOIN campaign c ON c.id = d.campaign_id "
                         "WHERE c.id IS NULL").fetchone()
    assert orphans == (0,)


def test_late_field_too_long_refuses_the_whole_file(db: psycopg.Connection) -> None:
    name = unique_name()
    data = b"phone,note\n" + b"+14155552671,x\n" * 30 + b"+14155552672," + b"y" * 200 + b"\n"
    with pytest.raises(BadInputFile) as info:
        load_campaign_csv(name=name, source=io.BytesIO(data), settings=Settings(max_field_bytes=100))
    assert info.value.reason == "field_too_long" and "line 32" in str(info.value)
    assert campaign_count(db, name) == 0


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty_file"),
    (b"phone\n", "empty_file"),
    (b"+14155552671\n+14155552672\n", "no_header"),
    (b"name,city\nAnn,Paris\n", "no_phone_column"),
    (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "binary_content"),
    (b"phone\n\x81\x8d\n", "undecodable"),
])
def test_bad_files_create_no_campaign(db: psycopg.Connection, data: bytes, reason: str) -> None:
    name = unique_name()
    with pytest.raises(BadInputFile) as info:
        load_campaign_csv(name=name, source=io.BytesIO(data))
    assert info.value.reason == reason
    assert campaign_count(db, name) == 0


def test_bad_options_and_missing_things_are_refused(db: psycopg.Connection, tmp_path: Path) -> None:
    data = b"phone\n+14155552671\n"
    with pytest.raises(InvalidRequest, match="region"):
        load(data, default_region="XX")
    with pytest.raises(InvalidRequest, match="caller ID"):
        load(data, caller_id="123")
    with pytest.raises(InvalidRequest, match="time zone"):
        load(data, default_timezone="Mars/Base")
    with pytest.raises(NotFound, match="account"):
        load(data, account_id=987_654_321)
    with pytest.raises(NotFound, match="no such file"):
        load_campaign_csv(name=unique_name(), source=tmp_path / "absent.csv")


def test_caller_id_and_region_are_stored_normalised(db: psycopg.Connection) -> None:
    report = load(b"phone\n020 7946 0018\n", default_region="gb", caller_id="020 7946 0000")
    row = db.execute("SELECT default_region, caller_id FROM campaign WHERE id = %s",
                     (report.campaign_id,)).fetchone()
    assert row == ("GB", "+442079460000")
    assert destinations(db, report.campaign_id)[0][1] == "+442079460018"


def test_parallel_load_stores_exactly_what_the_inline_load_stores(db: psycopg.Connection,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(copy_chunks, "CHUNK_ROWS", 250)
    monkeypatch.setattr(copy_chunks, "PARALLEL_AFTER_ROWS", 500)
    seen: list[LoadProgress] = []
    parallel = load_campaign_csv(name=unique_name(), source=SAMPLE, options=LoadOptions(workers=2),
                                 progress=seen.append)
    inline = load_campaign_csv(name=unique_name(), source=SAMPLE, options=LoadOptions(workers=1))
    assert parallel.rejects_by_reason == inline.rejects_by_reason
    assert destinations(db, parallel.campaign_id) == destinations(db, inline.campaign_id)
    assert rejects(db, parallel.campaign_id) == rejects(db, inline.campaign_id)
    reading = [p.rows_read for p in seen if p.phase == "reading"]
    assert reading == sorted(reading) and reading[-1] == 10_000 and len(reading) == 40
    assert seen[-1].phase == "done" and seen[-1].bytes_read == seen[-1].bytes_total == SAMPLE.stat().st_size
