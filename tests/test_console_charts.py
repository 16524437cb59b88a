"""The console's charts: pure SVG from numbers (workers.entrypoints.console.charts) and the shaping of the
attempt rows' counts into series (chart_data)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from workers.entrypoints.console.chart_data import (
    answer_rate_by_hour,
    bucket_width,
    cumulative_outcomes,
    duration_histogram,
    rate_points,
)
from workers.entrypoints.console.charts import Series, bar_chart, line_chart, nice_ceiling

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(("value", "top"), [(0, 1), (0.3, 0.5), (1, 1), (7, 10), (12, 20), (21, 25),
                                            (100, 100), (101, 200), (4900, 5000)])
def test_the_axis_top_is_the_next_round_number(value: float, top: float) -> None:
    assert nice_ceiling(value) == pytest.approx(top)


def test_a_line_chart_is_well_formed_svg_with_one_polyline_per_series_and_a_dashed_limit() -> None:
    svg = line_chart("cps", [Series("calls", [(0, 1), (1, 3), (2, 2)]), Series("budget", [(0, 4), (2, 4)],
                                                                                dashed=True)])
    root = ET.fromstring(svg)
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2 and lines[1].get("stroke-dasharray") and not lines[0].get("stroke-dasharray")
    # y = 4 is the axis top (nice_ceiling(4) = 5 would leave it below): the budget sits under the top line.
    first_y = float(lines[1].get("points", "").split()[0].split(",")[1])
    assert 16 < first_y < 220 - 34


def test_text_is_escaped_so_a_campaign_name_cannot_inject_markup() -> None:
    svg = line_chart("<script>alert(1)</script>", [Series("a&b <x>", [(0, 1), (1, 1)])])
    ET.fromstring(svg)  # still well-formed
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "a&amp;b &lt;x&gt;" in svg


def test_no_data_draws_a_no_data_chart() -> None:
    assert "no data yet" in line_chart("t", []) and "no data yet" in bar_chart("t", [])
    ET.fromstring(line_chart("t", [Series("s", [])]))


def test_bars_scale_to_a_fixed_axis_and_clip_above_it() -> None:
    root = ET.fromstring(bar_chart("rate", [("00", 0.5), ("01", 1.0), ("02", 2.0)], y_max=1.0))
    heights = [float(r.get("height", "0")) for r in root.findall(f"{SVG}rect")]
    assert heights[0] == pytest.approx(heights[1] / 2) and heights[2] == heights[1]


def test_rate_points_fill_quiet_seconds_and_bucket_a_long_campaign() -> None:
    assert rate_points([(100, 5), (103, 2)]) == [(0, 5.0), (1, 0.0), (2, 0.0), (3, 2.0)]
    long = [(s, 10) for s in range(0, 1000)]
    points = rate_points(long, max_points=100)
    assert len(points) == 100 and all(y == pytest.approx(10.0) for _, y in points)
    assert bucket_width(0, 999, 100) == 10 and rate_points([]) == []


def test_outcomes_accumulate_per_outcome_on_shared_buckets() -> None:
    series = cumulative_outcomes([(10, "answered", 2), (11, "busy", 1), (12, "answered", 3)])
    by_name = {s.name: s.points for s in series}
    assert series[0].name == "answered"
    assert by_name["answered"] == [(0.0, 2.0), (1.0, 2.0), (2.0, 5.0)]
    assert by_name["busy"] == [(0.0, 0.0), (1.0, 1.0), (2.0, 1.0)]


def test_answer_rate_has_24_hours_and_zero_where_nobody_was_called() -> None:
    bars = answer_rate_by_hour([(9, 4, 3), (23, 2, 0)])
    assert len(bars) == 24 and bars[9] == ("09", 0.75) and bars[23] == ("23", 0.0) and bars[0] == ("00", 0.0)


def test_durations_fall_in_equal_bins_labelled_by_their_lower_bound() -> None:
    bars = duration_histogram([(0, 1), (5, 2), (59, 1)], bins=6)
    assert bars[0] == ("0s", 3.0) and bars[-1] == ("50s", 1.0) and len(bars) == 6
    assert duration_histogram([]) == []
