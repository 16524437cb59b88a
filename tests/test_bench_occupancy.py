"""The line-occupancy bench's arithmetic (bench.occupancy_bench): occupancy, the ideal and how long each
freed line sat idle, on hand-made call records."""

from __future__ import annotations

import pytest

from bench.occupancy_bench import occupancy, refill_delays


def test_a_line_refilled_at_its_hangup_waits_zero() -> None:
    # 2 lines; calls 3 and 4 start exactly when calls 1 and 2 end.
    spans = [(0.0, 3.0), (0.5, 3.5), (3.0, 6.0), (3.5, 6.5)]
    assert refill_delays(spans, lines=2) == [0.0, 0.0]


def test_refill_delay_is_measured_from_the_hangup_that_freed_the_line() -> None:
    # The third call needs the first hangup (t=3) and came 0.25 s later; the fourth needs the second (t=3.5).
    spans = [(0.0, 3.0), (0.5, 3.5), (3.25, 6.25), (4.5, 7.5)]
    assert refill_delays(spans, lines=2) == [0.25, 1.0]


def test_occupancy_counts_busy_line_seconds_against_lines_times_the_whole_span() -> None:
    spans = [(0.0, 3.0), (0.5, 3.5), (3.25, 6.25), (4.5, 7.5)]
    result = occupancy(spans, lines=2, rate=2.0)
    assert result["total_s"] == 7.5
    assert result["occupancy_pct"] == pytest.approx(100 * 12.0 / 15.0, abs=0.1)
    # 4 calls of 3 s on 2 lines, plus a ramp of 2 lines at 2 CPS.
    assert result["ideal_s"] == 6.0 + 1.0
    assert result["refills_within_100ms_pct"] == 0.0
    assert result["refill_max_ms"] == 1000.0


def test_fewer_calls_than_lines_have_no_refills() -> None:
    assert refill_delays([(0.0, 3.0)], lines=30) == []
    assert occupancy([(0.0, 3.0)], lines=30, rate=50)["refills_within_100ms_pct"] is None
