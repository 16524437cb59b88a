"""The live view's arithmetic (pure): CPS now, live calls, ETA from the recent finishing rate."""

from __future__ import annotations

from campaigns.control import CampaignStatus
from campaigns.progress import Figures, Progress, eta_seconds, format_duration


def _figures(at: float, done: int, total: int = 100, live: int = 3, sent: int = 20) -> Figures:
    by_status = {"done": done, "dialing": live, "pending": total - done - live}
    status = CampaignStatus(
        id=7,
        name="x",
        state="running",
        state_reason=None,
        account_id=1,
        rows_total=total,
        rows_loaded=total,
        rows_rejected=0,
        throttled=2,
        by_status=by_status,
        by_outcome={"answered": done, "-": live},
        attempts=done + live,
        answered_seconds=0,
        mean_duration_s=None,
    )
    return Figures(at=at, status=status, sent_recently=sent, cps_budget=5.0, max_concurrent=50)


def test_eta_extrapolates_the_recent_finishing_rate() -> None:
    progress = Progress()
    progress.add(_figures(0.0, 10))
    assert progress.eta() is None, "one reading: no rate yet"
    progress.add(_figures(10.0, 30))
    assert progress.finish_rate() == 2.0
    assert progress.eta() == 35.0  # 70 left at 2 a second


def test_old_readings_leave_the_window() -> None:
    progress = Progress()
    for second in range(0, 100, 10):
        progress.add(_figures(float(second), second // 2))
    assert progress.latest.at - progress.readings[0].at <= 30


def test_the_line_says_cps_against_budget_live_calls_outcomes_and_eta() -> None:
    progress = Progress()
    progress.add(_figures(0.0, 10))
    progress.add(_figures(10.0, 30))
    line = progress.line()
    assert "cps 4.0/5" in line and "live 3/50" in line and "done 30/100" in line
    assert "answered=30" in line and "eta 0m35s" in line and "429s 2" in line


def test_eta_edge_cases() -> None:
    assert eta_seconds(0, None) == 0.0
    assert eta_seconds(10, 0.0) is None
    assert format_duration(None) == "unknown"
    assert format_duration(3725) == "1h02m"
