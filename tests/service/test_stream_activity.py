"""A stream's counts and recent timings (:class:`StreamActivity`), worked by hand: percentiles by nearest rank,
results per second over the last 10 s, ages from capture times, and bounded memory."""

from __future__ import annotations

import pytest

from service.errors import ErrorCode
from service.stream_stats import RATE_WINDOW_S, RECENT_RESULTS, StreamActivity, percentile
from service.types import DropReason, FrameDropped, FrameError, FrameResult, LatencyBreakdown


def _result(total_ms: float, capture_time_ns: int = 0) -> FrameResult:
    return FrameResult(
        stream_id="s",
        frame_index=0,
        capture_time_ns=capture_time_ns,
        camera_frame_id="",
        received_time_ns=0,
        completed_time_ns=0,
        model_version="v",
        slot_ids=(0,),
        latency=LatencyBreakdown(total_ms=total_ms),
    )


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.5, 0.0),
        ([7.0], 0.99, 7.0),
        ([3.0, 1.0, 2.0], 0.5, 2.0),
        ([4.0, 1.0, 3.0, 2.0], 0.5, 2.0),  # nearest rank: the 2nd of 4
        ([float(v) for v in range(1, 101)], 0.99, 99.0),
        ([float(v) for v in range(1, 51)], 0.99, 50.0),  # fewer than 100: the largest
    ],
)
def test_percentiles_are_taken_by_nearest_rank(values, fraction, expected):
    assert percentile(values, fraction) == expected


def test_answers_are_counted_by_kind_reason_and_code():
    activity = StreamActivity()
    for _ in range(4):
        activity.taken()
    activity.answered(_result(5.0), now=100.0, now_ns=0)
    activity.answered(FrameDropped("s", 1, 0, DropReason.STALE, ""), now=100.1, now_ns=0)
    activity.answered(FrameDropped("s", 2, 0, DropReason.STALE, ""), now=100.2, now_ns=0)
    activity.answered(FrameError("s", 3, ErrorCode.WRONG_RAW_SIZE, "", 0), now=100.3, now_ns=0)
    assert (activity.received, activity.processed) == (4, 1)
    assert activity.dropped == {DropReason.STALE: 2}
    assert activity.errors == {ErrorCode.WRONG_RAW_SIZE: 1}
    assert list(activity.latencies_ms) == [5.0], "only results have latencies"


def test_results_per_second_count_the_last_ten_seconds_or_the_streams_life():
    activity = StreamActivity()
    for tenth in range(50):  # 10 results a second from t=1000.0 to t=1004.9
        activity.answered(_result(1.0), now=1000.0 + tenth / 10, now_ns=0)
    assert activity.results_per_s(now=1004.95, open_s=5.0) == pytest.approx(10.0), "50 results over a 5 s life"
    # seconds 996-1004 and the 0.95 s of second 1005 so far: 9.95 s, which hold the 50
    assert activity.results_per_s(now=1005.95, open_s=60.0) == pytest.approx(50 / 9.95)
    assert activity.results_per_s(now=1012.5, open_s=60.0) == pytest.approx(20 / 9.5), "1003-1012.5 hold 20"
    assert activity.results_per_s(now=1014.0, open_s=60.0) == 0.0, "none since second 1005"
    assert activity.results_per_s(now=1000.0, open_s=0.2) == pytest.approx(50.0), "a life under 1 s counts as 1 s"


def test_a_steady_rate_reads_the_same_at_any_point_of_a_second():
    for fraction in (0.0, 0.3, 0.7, 0.99):
        activity, now = StreamActivity(), 2029.0 + fraction
        for twentieth in range(20 * 30):  # 20 results a second, those answered by now
            if (answered := 2000.0 + twentieth / 20) <= now:
                activity.answered(_result(1.0), now=answered, now_ns=0)
        assert activity.results_per_s(now=now, open_s=30.0) == pytest.approx(20.0, rel=0.06), fraction


def test_ages_come_from_capture_times_and_results_without_one_are_left_out():
    activity = StreamActivity()
    now_ns = 2_000_000_000_000
    activity.answered(_result(1.0, capture_time_ns=now_ns - 30_000_000), now=1.0, now_ns=now_ns)
    activity.answered(_result(1.0), now=1.0, now_ns=now_ns)
    assert list(activity.capture_ages_ms) == [30.0]


def test_memory_per_stream_is_bounded():
    activity = StreamActivity()
    for index in range(10 * RECENT_RESULTS):
        activity.answered(_result(float(index), capture_time_ns=1), now=index / 7, now_ns=2)
    assert len(activity.latencies_ms) == len(activity.capture_ages_ms) == RECENT_RESULTS
    assert activity.latencies_ms[0] == 9 * RECENT_RESULTS, "the newest are kept"
    assert len(activity.results_by_second) <= RATE_WINDOW_S
