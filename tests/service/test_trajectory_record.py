"""``SlotTrajectory.record`` turns the answers of ``stream_frames`` into the file ``stream --slots`` writes: a result
as a row measured on its segmentation for the frame's size, a drop or a refusal as a missing frame with its reason,
each with the capture time the caller gave."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from service_helpers import make_video, run

from service.client import (
    Client,
    FrameResult,
    ModelCard,
    Output,
    SlotTrajectory,
    StreamOptions,
    slot_geometry,
    stream_frames,
    trajectory_mask_size,
)
from service.client.trajectory import trajectory_end


def test_the_answers_of_a_blocking_loop_become_a_trajectory_file(start_server, tmp_path):
    server = start_server(max_image_pixels=480_000)
    clip = make_video(seed=21, frames=6, size=(30, 40))
    now = time.time_ns()
    stamps = [now + index * 50_000_000 for index in range(6)]
    stamps[2] = now - 60 * 10**9  # a minute old: dropped as stale
    frames = [*clip[:5], make_video(seed=23, frames=1, size=(700, 700))[0]]  # the last beyond the pixel limit
    options = StreamOptions(
        outputs=frozenset({Output.SLOTS, Output.SEGMENTATION}),
        mask_size=trajectory_mask_size((30, 40)),
        max_staleness_s=5.0,
    )
    trajectory = SlotTrajectory(tmp_path / "slots.npz", capture_clock="wall_clock", source="test camera")
    results = []
    for answer in stream_frames(server.target, zip(frames, stamps, strict=True), options):
        trajectory.record(answer, frame_size=(30, 40))
        if isinstance(answer, FrameResult):
            results.append(answer)
    trajectory.end_reason = "end"
    trajectory.save()
    with np.load(tmp_path / "slots.npz") as saved:
        assert saved["frame_index"].tolist() == [0, 1, 3, 4]
        assert saved["capture_time_ns"].tolist() == [stamps[i] for i in (0, 1, 3, 4)]
        assert saved["missing_frame_index"].tolist() == [2, 5]
        assert saved["missing_reason"].tolist() == ["dropped: STALE", "refused: IMAGE_TOO_LARGE"]
        assert saved["frame_size"].tolist() == [[30, 40]] * 4
        for row, result in enumerate(results):
            geometry = slot_geometry(result.segmentation, len(result.slot_ids), (30, 40))
            np.testing.assert_array_equal(saved["boxes"][row], geometry.boxes)
            np.testing.assert_array_equal(saved["areas"][row], geometry.areas.astype(np.float32))  # stored as float32
            np.testing.assert_array_equal(saved["slots"][row], result.slots)
        assert trajectory_end(saved) == (True, "end")


def test_a_result_without_a_segmentation_cannot_be_measured(start_server, tmp_path):
    server = start_server()
    frame = make_video(seed=22, frames=1, size=(30, 40))[0]
    trajectory = SlotTrajectory(tmp_path / "slots.npz")
    (answer,) = stream_frames(server.target, [frame], StreamOptions(outputs=frozenset({Output.SLOTS})))
    with pytest.raises(ValueError, match="frame 0: the result has no segmentation, which a row's areas and geometry"):
        trajectory.record(answer, frame_size=(30, 40))
    assert len(trajectory) == 0


def test_a_run_without_a_single_result_still_says_which_model_and_with_k_and_d_concatenates(start_server, tmp_path):
    """Every frame is dropped as stale: the file takes the model version from the drops, and with the slot count and
    width set (from the model card) its empty ``slots`` concatenates with another run's."""
    server = start_server()
    clip = make_video(seed=24, frames=3, size=(30, 40))
    stale = [(frame, time.time_ns() - 60 * 10**9) for frame in clip]  # a minute old: every frame dropped
    options = StreamOptions(outputs=frozenset({Output.SLOTS, Output.SEGMENTATION}), max_staleness_s=5.0)
    trajectory = SlotTrajectory(tmp_path / "stale.npz")
    card = run(_describe(server.target))
    trajectory.slot_count, trajectory.slot_width = card.num_slots, card.slot_dim
    for answer in stream_frames(server.target, stale, options):
        trajectory.record(answer, frame_size=(30, 40))
    trajectory.save()
    (result,) = stream_frames(server.target, clip[:1], options)
    with np.load(tmp_path / "stale.npz") as saved:
        assert saved["missing_reason"].tolist() == ["dropped: STALE"] * 3
        assert str(saved["model_version"]) == result.model_version != ""
        both = np.concatenate([saved["slots"], result.slots[None]])  # [0 + 1, K, D]
    assert both.shape == (1, *result.slots.shape)


async def _describe(target: str) -> ModelCard:
    async with Client(target) as client:
        return await client.describe()


def test_the_readme_trajectory_recipe_runs_after_the_python_example(server, tmp_path):
    """The README's recipe (which goes on from the Quickstart's Python example's frames) writes a file of a row per
    frame, stamped with the times it gave."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    python_blocks = [block.split("```", 1)[0] for block in readme.split("```python\n")[1:]]
    example = next(block for block in python_blocks if "frames = [np.full((480, 640, 3)" in block)
    recipe = next(block for block in python_blocks if "SlotTrajectory(Path(" in block)
    script = (example + recipe).replace("127.0.0.1:50051", server.target)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "slots.npz") as saved:
        assert saved["frame_index"].tolist() == list(range(10))
        assert saved["capture_time_ns"].tolist() == [1_700_000_000_000_000_000 + i * 33_333_333 for i in range(10)]
        assert trajectory_end(saved) == (True, "end")
