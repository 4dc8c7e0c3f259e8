"""A capture time beyond the int64 a trajectory file stores is refused when its row is added, so the rows before it
are still saved, instead of failing the whole file with an ``OverflowError`` when it is written."""

from __future__ import annotations

import numpy as np
import pytest

from service.client.trajectory_writer import SlotTrajectory
from service.types import FrameResult, LatencyBreakdown


def _result(index: int, capture_time_ns: int) -> FrameResult:
    return FrameResult(
        stream_id="s",
        frame_index=index,
        capture_time_ns=capture_time_ns,
        camera_frame_id="",
        received_time_ns=0,
        completed_time_ns=0,
        model_version="v1",
        slot_ids=(0, 1),
        latency=LatencyBreakdown(batch_size=1),
        slots=np.zeros((2, 3), np.float32),
    )


@pytest.mark.parametrize("capture_time_ns", [2**63, -(2**63) - 1, 10**30])
def test_a_capture_time_beyond_int64_is_refused_and_the_rows_before_it_are_saved(tmp_path, capture_time_ns):
    path = tmp_path / "t.npz"
    trajectory = SlotTrajectory(path)
    trajectory.add(_result(0, 2**63 - 1), np.full(2, 0.5))  # the largest int64 still fits
    with pytest.raises(ValueError, match=f"frame 1: its capture time, {capture_time_ns} ns, is beyond the int64"):
        trajectory.add(_result(1, capture_time_ns), np.full(2, 0.5))
    assert len(trajectory) == 1
    trajectory.save()
    with np.load(path) as saved:
        assert saved["frame_index"].tolist() == [0] and saved["capture_time_ns"].tolist() == [2**63 - 1]
