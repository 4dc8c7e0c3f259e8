"""Scores by number of objects: ``evaluate_by_object_count`` and ``python -m training.evaluate --by-objects``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from reference_scores import reference_scores

from plugins.testing import TINY_MODEL, build_tiny
from training.datasets import VideoClip
from training.evaluate import main as evaluate_main
from training.evaluation import evaluate, evaluate_by_object_count, object_count

VIDEO_KEYS = ("video_ari", "video_fg_ari", "video_mbo", "video_miou")


def test_object_count_leaves_out_background_and_void() -> None:
    ids = torch.zeros(2, 4, 4, dtype=torch.long)  # [T, H, W]
    ids[0, 0, 0] = 3
    ids[1, 2, 2] = 3  # the same object on another frame
    ids[1, 3, 3] = 250  # an id need not be small or contiguous
    ids[0, 1, 1] = -1  # void
    assert object_count(ids) == 2
    assert object_count(torch.zeros(2, 4, 4, dtype=torch.long)) == 0
    assert object_count(torch.full((1, 2, 2), -1)) == 0


def _clip(name: str, objects: int, seed: int) -> VideoClip:
    """A 3-frame 16x16 video with ``objects`` square objects that move by a pixel per frame."""
    generator = torch.Generator().manual_seed(seed)
    masks = torch.zeros(3, 16, 16, dtype=torch.long)  # [T, H, W]
    for t in range(3):
        for index in range(objects):
            top, left = 1 + 7 * (index // 2), 1 + 7 * (index % 2) + t
            masks[t, top : top + 5, left : left + 5] = 10 + index
    frames = torch.rand(3, 3, 16, 16, generator=generator)
    return VideoClip(frames=frames, masks=masks, name=name)


def test_videos_are_scored_in_the_group_of_their_object_count() -> None:
    model = build_tiny(TINY_MODEL, seed=0).eval()
    clips = [_clip("a", 2, 0), _clip("b", 3, 1), _clip("c", 2, 2), _clip("d", 1, 3)]
    overall, groups = evaluate_by_object_count(model, clips)

    assert list(groups) == [1, 2, 3]
    assert [groups[count].num_videos for count in groups] == [1, 2, 1]
    expected = {1: [clips[3]], 2: [clips[0], clips[2]], 3: [clips[1]]}
    for count, members in expected.items():
        assert {key: getattr(groups[count], key) for key in VIDEO_KEYS} == pytest.approx(
            reference_scores(model, members, VIDEO_KEYS)
        )
    # The groups are distinguishable, so a wrong grouping would show above.
    assert groups[1].video_mbo != pytest.approx(groups[3].video_mbo)

    plain = evaluate(model, clips)
    assert {key: getattr(overall, key) for key in VIDEO_KEYS} == {key: getattr(plain, key) for key in VIDEO_KEYS}
    weighted = sum(groups[count].video_mbo * groups[count].num_videos for count in groups) / len(clips)
    assert weighted == pytest.approx(overall.video_mbo)


def test_plain_evaluation_does_not_group_its_videos(monkeypatch) -> None:
    """Training evaluates often; the grouping's second contingency table per video is made only when asked."""
    import training.evaluation as evaluation

    def refuse(ids: torch.Tensor) -> int:
        raise AssertionError("evaluate() grouped the videos")

    monkeypatch.setattr(evaluation, "object_count", refuse)
    model = build_tiny(TINY_MODEL, seed=0).eval()
    assert evaluate(model, [_clip("a", 2, 0)]).num_videos == 1


def test_the_cli_prints_and_writes_the_groups_only_when_asked(tmp_path: Path, capsys) -> None:
    model_dir = tmp_path / "model"
    build_tiny(TINY_MODEL, seed=0).save_pretrained(model_dir)
    data = ["--model", str(model_dir), "--data", "synthetic:medium", "--videos", "3", "--frames", "2"]

    plain_json = tmp_path / "plain.json"
    assert evaluate_main([*data, "--json", str(plain_json)]) == 0
    assert "by number of objects" not in capsys.readouterr().out
    assert "by_object_count" not in json.loads(plain_json.read_text())

    grouped_json = tmp_path / "grouped.json"
    assert evaluate_main([*data, "--by-objects", "--json", str(grouped_json)]) == 0
    printed = capsys.readouterr().out
    written = json.loads(grouped_json.read_text())
    groups = written["by_object_count"]
    assert sum(group["num_videos"] for group in groups.values()) == written["num_videos"] == 3
    assert all(3 <= int(count) <= 5 for count in groups)  # synthetic:medium has 3-5 objects per video
    assert "video mode by number of objects:" in printed
    for count, group in groups.items():
        row = next(line.split() for line in printed.splitlines() if line.split()[:1] == [count])
        assert row[1] == str(group["num_videos"]) and float(row[3]) == pytest.approx(group["video_fg_ari"], abs=5e-5)
