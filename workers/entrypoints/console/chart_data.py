"""What the campaign page's charts show, read from the attempt rows the API already keeps: calls sent per
second against the budget, outcomes over time, the answer rate by the callee's local hour, and how long
answered calls lasted. The SQL reads counts; the shaping into series is pure (and tested)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import psycopg

from campaigns.states import Outcome
from workers.entrypoints.console.charts import Series, bar_chart, line_chart

MAX_POINTS = 120  # a line has at most this many points: wider buckets for a longer campaign
SENT_PER_SECOND = """
SELECT floor(extract(epoch FROM sent_at))::bigint, count(*) FROM call_attempt
WHERE campaign_id = %s AND sent_at IS NOT NULL GROUP BY 1 ORDER BY 1
"""
OUTCOMES_PER_SECOND = """
SELECT floor(extract(epoch FROM coalesce(end_at, sent_at, created_at)))::bigint, outcome, count(*)
FROM call_attempt WHERE campaign_id = %s AND outcome IS NOT NULL GROUP BY 1, 2 ORDER BY 1
"""
ANSWERS_BY_LOCAL_HOUR = f"""
SELECT extract(hour FROM a.sent_at AT TIME ZONE d.timezone)::int, count(*),
       count(*) FILTER (WHERE a.outcome = '{Outcome.ANSWERED.value}')
FROM call_attempt a JOIN destination d ON d.id = a.destination_id
WHERE a.campaign_id = %s AND a.sent_at IS NOT NULL AND a.outcome IS NOT NULL GROUP BY 1
"""
ANSWERED_DURATIONS = f"""
SELECT duration, count(*) FROM call_attempt
WHERE campaign_id = %s AND outcome = '{Outcome.ANSWERED.value}' AND duration IS NOT NULL GROUP BY 1
"""


def bucket_width(first: int, last: int, max_points: int = MAX_POINTS) -> int:
    """Seconds per point so that [first, last] takes at most max_points points."""
    return max(1, math.ceil((last - first + 1) / max_points))


def rate_points(per_second: Sequence[tuple[int, int]],
                max_points: int = MAX_POINTS) -> list[tuple[float, float]]:
    """(second, count) rows to (seconds from the first, calls per second) points, quiet seconds as 0."""
    if not per_second:
        return []
    first, last = per_second[0][0], per_second[-1][0]
    width = bucket_width(first, last, max_points)
    buckets = [0] * ((last - first) // width + 1)
    for second, count in per_second:
        buckets[(second - first) // width] += count
    return [(i * width, total / width) for i, total in enumerate(buckets)]


def cumulative_outcomes(rows: Sequence[tuple[int, str, int]],
                        max_points: int = MAX_POINTS) -> list[Series]:
    """(second, outcome, count) rows to one running total per outcome, on shared buckets."""
    if not rows:
        return []
    first, last = min(r[0] for r in rows), max(r[0] for r in rows)
    width = bucket_width(first, last, max_points)
    size = (last - first) // width + 1
    per_outcome: dict[str, list[int]] = {}
    for second, outcome, count in rows:
        per_outcome.setdefault(outcome, [0] * size)[(second - first) // width] += count
    series = []
    for outcome in sorted(per_outcome, key=lambda o: -sum(per_outcome[o])):
        total, points = 0, []
        for i, count in enumerate(per_outcome[outcome]):
            total += count
            points.append((float(i * width), float(total)))
        series.append(Series(outcome, points))
    return series


def answer_rate_by_hour(rows: Sequence[tuple[int, int, int]]) -> list[tuple[str, float]]:
    """(local hour, calls, answered) rows to 24 bars of the answered share (0 where nothing was called)."""
    by_hour = {hour: (calls, answered) for hour, calls, answered in rows}
    return [(f"{hour:02d}", by_hour[hour][1] / by_hour[hour][0] if by_hour.get(hour, (0, 0))[0] else 0.0)
            for hour in range(24)]


def duration_histogram(rows: Sequence[tuple[int, int]], bins: int = 12) -> list[tuple[str, float]]:
    """(seconds, count) rows to at most `bins` bars of equal width, labelled by their lower bound."""
    if not rows:
        return []
    longest = max(seconds for seconds, _ in rows)
    width = max(1, math.ceil((longest + 1) / bins))
    counts = [0] * ((longest // width) + 1)
    for seconds, count in rows:
        counts[max(0, seconds) // width] += count
    return [(f"{i * width}s", float(count)) for i, count in enumerate(counts)]


def campaign_charts(conn: psycopg.Connection, campaign_id: int, cps_budget: float | None) -> dict[str, str]:
    """The four charts of a campaign page, as SVG markup by name."""
    sent = [(int(s), int(n)) for s, n in conn.execute(SENT_PER_SECOND, (campaign_id,)).fetchall()]
    points = rate_points(sent)
    cps = [Series("calls per second", points)]
    if cps_budget is not None and points:
        cps.append(Series(f"budget {cps_budget:g}", [(0.0, cps_budget), (points[-1][0], cps_budget)],
                          dashed=True))
    outcomes = conn.execute(OUTCOMES_PER_SECOND, (campaign_id,)).fetchall()
    hours = conn.execute(ANSWERS_BY_LOCAL_HOUR, (campaign_id,)).fetchall()
    durations = conn.execute(ANSWERED_DURATIONS, (campaign_id,)).fetchall()
    return {
        "cps": line_chart("Calls per second against the budget", cps, y_unit="calls/s"),
        "outcomes": line_chart("Outcomes over time", cumulative_outcomes(outcomes), y_unit="calls"),
        "answer_rate": bar_chart("Answer rate by the callee's local hour", answer_rate_by_hour(hours),
                                 y_unit="answered share", y_max=1.0, label_every=3),
        "durations": bar_chart("Answered call duration", duration_histogram(durations), y_unit="calls"),
    }
