"""``SlotTrajectory``: the slot file a stream's results are saved to, including its edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from service.client.trajectory import TRAJECTORY_ARRAYS
from service.client.trajectory_writer import SlotTrajectory
from service.types import FrameResult, LatencyBreakdown


def _result(index: int, slots: np.ndarray | None) -> FrameResult:
    return FrameResult(
        stream_id="s",
        frame_index=index,
        capture_time_ns=1000 + index,
        camera_frame_id="",
        received_time_ns=0,
        completed_time_ns=0,
        model_version="v1",
        slot_ids=tuple(range(3)),
        latency=LatencyBreakdown(batch_size=1),
        slots=slots,
    )


def test_a_trajectory_without_results_saves_empty_arrays_of_the_documented_names(tmp_path):
    path = tmp_path / "empty.npz"
    SlotTrajectory(path).save()
    with np.load(path) as saved:
        assert sorted(saved.files) == sorted(TRAJECTORY_ARRAYS)
        assert saved["slots"].shape == (0, 0, 0) and saved["frame_index"].shape == (0,)


def test_frames_are_saved_in_the_order_received_with_their_capture_times(tmp_path):
    path = tmp_path / "t.npz"
    trajectory = SlotTrajectory(path)
    for index in (4, 7):  # frames 5 and 6 dropped: no rows
        trajectory.add(_result(index, np.full((3, 2), index, np.float32)), np.array([0.5, 0.25, 0.25]))
    trajectory.save()
    with np.load(path) as saved:
        assert saved["frame_index"].tolist() == [4, 7] and saved["capture_time_ns"].tolist() == [1004, 1007]
        assert saved["slots"].shape == (2, 3, 2) and saved["slots"][1, 2, 0] == 7
        assert saved["slot_ids"].tolist() == [[0, 1, 2], [0, 1, 2]] and str(saved["model_version"]) == "v1"


def test_results_without_slots_or_of_another_shape_are_refused(tmp_path):
    trajectory = SlotTrajectory(tmp_path / "t.npz")
    with pytest.raises(ValueError, match="frame 0: the result has no slots"):
        trajectory.add(_result(0, None), np.zeros(3))
    trajectory.add(_result(1, np.zeros((3, 2), np.float32)), np.zeros(3))
    with pytest.raises(ValueError, match=r"frame 2: slots of shape \(3, 4\), earlier frames' were \(3, 2\)"):
        trajectory.add(_result(2, np.zeros((3, 4), np.float32)), np.zeros(3))
    assert len(trajectory) == 1
