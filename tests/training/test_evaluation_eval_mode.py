"""``evaluate`` scores a model in eval mode whatever mode it is handed in: training evaluates its model between
steps, in training mode, where RandSF.Q's random slot-feature pairs, its dropout and the initializer's query noise
would otherwise leak into the scores and into the choice of ``best/``. The model's mode is given back afterwards."""

from __future__ import annotations

import copy

import pytest
import torch
from reference_scores import reference_scores

from plugins import VideoSlotModel
from plugins.testing import TINY_MODEL, build_tiny
from training.datasets import VideoClip
from training.evaluation import evaluate, evaluate_by_object_count
from training.metrics import ObjectDiscoveryMetrics

KEYS = ("video_ari", "video_fg_ari", "video_mbo", "video_miou", "image_ari", "image_mbo")


def _clips() -> list[VideoClip]:
    """Two 4-frame 16x16 videos with two objects that move by one pixel per frame."""
    generator = torch.Generator().manual_seed(11)
    clips = []
    for index in range(2):
        masks = torch.zeros(4, 16, 16, dtype=torch.long)  # [T, H, W]
        for t in range(4):
            masks[t, 1 + t : 7 + t, 2:8] = 3
            masks[t, 9:14, 8 + t : 14] = 6
        frames = torch.rand(4, 3, 16, 16, generator=generator)
        clips.append(VideoClip(frames=frames, masks=masks, name=f"clip{index}"))
    return clips


def _scores_in_training_mode(model: VideoSlotModel, clips: list[VideoClip]) -> dict[str, float]:
    """What the evaluation would score if it left the model in training mode."""
    assert model.training
    metrics = ObjectDiscoveryMetrics()
    for clip in clips:
        with torch.inference_mode():
            output = model(clip.frames.unsqueeze(0))  # [1, T, 3, H, W]
        assert clip.masks is not None
        metrics.update(output.masks.float(), clip.masks.unsqueeze(0))
    scores = metrics.compute()
    return {key: getattr(scores, key) for key in KEYS}


def test_evaluate_scores_a_model_in_training_mode_as_in_eval_mode_and_gives_its_mode_back() -> None:
    model = build_tiny(TINY_MODEL, seed=0).train()
    clips = _clips()
    expected = reference_scores(copy.deepcopy(model).eval(), clips, KEYS)
    torch.manual_seed(5)
    in_training_mode = _scores_in_training_mode(model, clips)
    assert in_training_mode != pytest.approx(expected), "a useless case: training mode scores as eval mode does"

    for evaluation in (evaluate, lambda *args: evaluate_by_object_count(*args)[0]):
        torch.manual_seed(5)  # the draws that gave the training-mode scores above
        scores = evaluation(model, clips)
        assert {key: getattr(scores, key) for key in KEYS} == pytest.approx(expected)
        assert model.training, "the evaluation left the model in eval mode"
        assert all(module.training for module in model.modules())


def test_the_reference_scores_give_the_models_mode_back() -> None:
    """Else a test that takes the reference scores first would hand ``evaluate`` a model already in eval mode."""
    model = build_tiny(TINY_MODEL, seed=0).train()
    reference_scores(model, _clips()[:1], KEYS)
    assert model.training
    model.eval()
    reference_scores(model, _clips()[:1], KEYS)
    assert not model.training
