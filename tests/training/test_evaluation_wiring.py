"""Wiring of the evaluation: the background policy reaches mBO / mIoU (in the accumulator, in ``evaluate`` and in
``python -m training.evaluate``), and ``--mask-source attention`` scores the last Slot Attention iteration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from reference_scores import reference_scores

import training.evaluation as evaluation
from plugins import VideoSlotModel
from plugins.testing import TINY_MODEL, build_tiny
from training.datasets import VideoClip
from training.datasets.selection import evaluation_videos
from training.evaluate import main as evaluate_main
from training.evaluation import evaluate, predicted_masks, predicted_videos
from training.metrics import ObjectDiscoveryMetrics

SCORE_KEYS = (
    "video_ari",
    "video_fg_ari",
    "video_mbo",
    "video_miou",
    "image_ari",
    "image_fg_ari",
    "image_mbo",
    "image_miou",
)


def _one_slot_everywhere(gt: torch.Tensor, num_slots: int = 2) -> torch.Tensor:
    """Soft masks ``[B, T, K, H, W]`` in which slot 0 is the largest at every pixel of ``gt [B, T, H, W]``."""
    masks = torch.full((*gt.shape[:2], num_slots, *gt.shape[2:]), 0.2)
    masks[:, :, 0] = 0.8
    return masks


def test_the_accumulator_scores_mbo_and_miou_with_the_segment_policy_it_was_given() -> None:
    # gt = 0 0 0 / 0 0 7 in both frames; slot 0 wins every pixel (slot 1 never does).
    # "ignore":  only object 7 is scored: IoU(7, slot 0) = 1/6                      -> mBO = mIoU = 1/6.
    # "segment": background is scored too: IoU(bg, slot 0) = 5/6, IoU(7, slot 0) = 1/6 -> mBO = (5/6 + 1/6)/2 = 1/2;
    #            Hungarian gives slot 0 to the background, object 7 gets the empty slot 1 (IoU 0)
    #            -> mIoU = (5/6 + 0)/2 = 5/12. Both frames alike, so video and image mode agree.
    gt = torch.tensor([[[0, 0, 0], [0, 0, 7]]] * 2).unsqueeze(0)  # [1, 2, 2, 3]
    masks = _one_slot_everywhere(gt)
    expected = {
        "ignore": {"mbo": 1 / 6, "miou": 1 / 6},
        "segment": {"mbo": 1 / 2, "miou": 5 / 12},
    }
    for policy, values in expected.items():
        metrics = ObjectDiscoveryMetrics(background=policy)  # type: ignore[arg-type]
        metrics.update(masks, gt)
        scores = metrics.compute()
        assert scores.background_policy == policy
        for mode in ("video", "image"):
            assert getattr(scores, f"{mode}_mbo") == pytest.approx(values["mbo"]), (policy, mode)
            assert getattr(scores, f"{mode}_miou") == pytest.approx(values["miou"]), (policy, mode)
        assert scores.num_invalid_videos == scores.num_invalid_frames == 0


def _labelled_clips() -> list[VideoClip]:
    """Two 3-frame 16x16 videos with a background and two objects that move by one pixel per frame."""
    generator = torch.Generator().manual_seed(7)
    clips = []
    for index in range(2):
        masks = torch.zeros(3, 16, 16, dtype=torch.long)
        for t in range(3):
            masks[t, 2 + t : 8 + t, 3:9] = 5
            masks[t, 10:14, 9 + t : 15] = 9
        frames = torch.rand(3, 3, 16, 16, generator=generator)
        clips.append(VideoClip(frames=frames, masks=masks, name=f"clip{index}"))
    return clips


def test_evaluate_scores_with_the_background_policy_it_is_given() -> None:
    model = build_tiny(TINY_MODEL, seed=0)
    clips = _labelled_clips()
    expected = {policy: reference_scores(model, clips, SCORE_KEYS, policy) for policy in ("ignore", "segment")}
    assert expected["segment"]["video_mbo"] != pytest.approx(expected["ignore"]["video_mbo"]), "a useless case"
    for policy in ("ignore", "segment"):
        scores = evaluate(model, clips, background=policy)  # type: ignore[arg-type]
        assert scores.background_policy == policy
        assert {key: getattr(scores, key) for key in SCORE_KEYS} == pytest.approx(expected[policy]), policy


def test_evaluate_cli_applies_and_records_background_segment(tmp_path: Path) -> None:
    """``python -m training.evaluate --background segment`` gives the segment-policy scores of the same masks."""
    model_dir = tmp_path / "model"
    build_tiny(TINY_MODEL, seed=0).save_pretrained(model_dir)
    data = ["--data", "synthetic:easy", "--videos", "1", "--frames", "2"]
    written = {}
    for policy in ("ignore", "segment"):
        out = tmp_path / f"{policy}.json"
        assert evaluate_main(["--model", str(model_dir), *data, "--background", policy, "--json", str(out)]) == 0
        written[policy] = json.loads(out.read_text())

    model = VideoSlotModel.from_pretrained(model_dir)
    clips = [evaluation_videos("synthetic:easy", model.image_size, 2)[0]]
    assert written["segment"]["background_policy"] == "segment"
    assert written["segment"]["num_videos"] == 1 and written["segment"]["num_frames"] == 2
    for policy in ("ignore", "segment"):
        expected = reference_scores(model, clips, SCORE_KEYS, policy)
        assert {key: written[policy][key] for key in SCORE_KEYS} == pytest.approx(expected), policy
    assert written["segment"]["video_mbo"] != pytest.approx(written["ignore"]["video_mbo"]), "a useless case"


def test_attention_masks_are_the_last_slot_attention_iteration_of_each_frame(monkeypatch) -> None:
    config = {**TINY_MODEL, "first_iters": 3, "later_iters": 2}
    model = build_tiny(config, seed=0).eval()
    clip = _labelled_clips()[0]
    with torch.inference_mode():
        output = model(clip.frames.unsqueeze(0))  # [1, T, 3, H, W]
    height, width = output.steps[0].grid
    first = output.steps[0].attention  # [1, R, K, h*w]
    assert first.shape[1] == 3 and output.steps[1].attention.shape[1] == 2
    # The iterations really differ, so taking any other one than the last would show.
    assert (first[:, 0] - first[:, 2]).abs().max() > 1e-3
    assert (output.steps[1].attention[:, 0] - output.steps[1].attention[:, 1]).abs().max() > 1e-3
    last = [first[:, 2], *(step.attention[:, 1] for step in output.steps[1:])]  # T x [1, K, h*w]
    expected = torch.stack([frame.unflatten(-1, (height, width)) for frame in last], dim=1)  # [1, T, K, h, w]
    assert expected[0, 0, 1, 2, 3] == first[0, 2, 1, 2 * width + 3]  # row-major tokens

    torch.testing.assert_close(predicted_masks(output, "attention"), expected, rtol=0, atol=0)
    ((_, yielded),) = list(predicted_videos(model, [clip], mask_source="attention"))
    torch.testing.assert_close(yielded, expected, rtol=0, atol=0)

    scored: list[torch.Tensor] = []
    real_upsample = evaluation.upsample_to_labels

    def spy(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        scored.append(masks.clone())
        return real_upsample(masks, size)

    monkeypatch.setattr(evaluation, "upsample_to_labels", spy)
    scores = evaluate(model, [clip], mask_source="attention")
    assert len(scored) == 1
    torch.testing.assert_close(scored[0], expected, rtol=0, atol=0)
    assert "last iteration" in scores.mask_source
    assert scored[0].shape[-2:] == (height, width) != tuple(output.masks.shape[-2:]), "not the decoder's masks"


@pytest.mark.parametrize(
    ("decoder", "kind"),
    [
        (TINY_MODEL["decoder"], "alpha masks"),
        ({"name": "ar_random", "kwargs": {"dim": 16, "depth": 2}}, "last-layer cross-attention"),
    ],
)
def test_reports_say_what_the_decoders_masks_are(decoder, kind) -> None:
    """The paper recipe's decoder has no alpha masks: its report must not say it scored some."""
    model = build_tiny({**TINY_MODEL, "decoder": decoder}, seed=0)
    scores = evaluate(model, _labelled_clips()[:1])
    assert scores.mask_source.startswith(f"decoder {kind}") and "decoder's resolution" in scores.mask_source
