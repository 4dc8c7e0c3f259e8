"""The training loop applies its configured settings: loss weights, gradient clipping (max norm and scope), the
warm-up + cosine learning-rate shape, the training progress handed to the model and the losses, the best-model
selection metrics, and per-rank, resumable batch sampling."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import training.loop
import training.step
from plugins import VideoSlotModel
from plugins.interfaces import Loss
from training.batches import StepBatchSampler
from training.best import BEST_MODEL_DIR, SELECTION_FILE, selection_score
from training.config import TrainConfig
from training.configs import get_config
from training.distributed import ProcessGroup
from training.gradients import clip_gradients
from training.loop import fit
from training.metrics import DiscoveryScores
from training.run_data import train_clips, train_loader
from training.schedule import warmup_cosine


def tiny(steps: int = 4, **top) -> TrainConfig:
    config = get_config("tiny")
    data = dataclasses.replace(config.data, val_videos=1, val_frames=2)
    fields = {"eval_every": 0, "checkpoint_every": steps, "log_every": 1, **top}
    return dataclasses.replace(config, steps=steps, data=data, **fields)


def records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [record for line in lines if (record := json.loads(line))["kind"] == kind]


def test_logged_loss_is_the_config_weighted_sum_of_the_logged_terms(tmp_path: Path) -> None:
    config = tiny(steps=3)
    weights = {term.name: term.weight for term in config.losses}
    assert any(weight != 1.0 for weight in weights.values()), "the tiny config must weight a term (preheat_mse)"
    fit(config, tmp_path, progress=False)
    train = records(tmp_path, "train")
    assert [record["step"] for record in train] == [1, 2, 3]
    for record in train:
        assert all(record[name] > 0 for name in weights), record  # each term contributes
        expected = sum(weight * record[name] for name, weight in weights.items())
        assert record["loss"] == pytest.approx(expected, rel=1e-5), record
        assert record["loss"] != pytest.approx(sum(record[name] for name in weights), rel=1e-3)


@pytest.mark.parametrize("configured", ["global", "component"])
def test_each_step_clips_gradients_with_the_configs_norm_and_scope(tmp_path: Path, monkeypatch, configured) -> None:
    calls: list[tuple[object, float | None, str, float]] = []

    def spy(model, max_norm, scope):  # the real function's parameter names, so keyword calls work too
        norm = clip_gradients(model, max_norm, scope)
        grads = [p.grad.norm() for p in model.parameters() if p.grad is not None]
        after = torch.linalg.vector_norm(torch.stack(grads))
        calls.append((model, max_norm, scope, float(after)))
        return norm

    monkeypatch.setattr(training.step, "clip_gradients", spy)
    config = tiny(steps=3)
    optim = dataclasses.replace(config.optim, grad_clip=0.01, grad_clip_scope=configured)
    fit(dataclasses.replace(config, optim=optim), tmp_path, progress=False)
    assert [(max_norm, scope) for _, max_norm, scope, _ in calls] == [(0.01, configured)] * 3
    assert all(isinstance(model, VideoSlotModel) for model, *_ in calls)
    logged = [record["grad_norm"] for record in records(tmp_path, "train")]
    assert all(norm > 0.01 for norm in logged), "the limit must bind for the check below to mean anything"
    if configured == "global":  # the gradients the optimiser steps with are within the limit
        assert all(after <= 0.01 * (1 + 1e-4) for *_, after in calls)


def test_schedule_warms_up_linearly_then_follows_a_half_cosine_to_the_final_fraction() -> None:
    total, warmup_fraction, final = 16, 0.1875, 0.01  # 3 warm-up steps, then 12 intervals of cosine
    warmup = 3
    expected = [(step + 1) / warmup for step in range(warmup)]
    expected += [
        final + (1 - final) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup - 1)))
        for step in range(warmup, total)
    ]
    actual = [warmup_cosine(step, total, warmup_fraction, final) for step in range(total)]
    assert actual == pytest.approx(expected, abs=1e-12)
    # Spelled out at quarter, third, half, two-thirds and three-quarter progress (a linear decay would give
    # 0.7525, 0.67, 0.505, 0.34, 0.2575 there: only the half-way point agrees).
    assert actual[:4] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    assert actual[6] == pytest.approx(0.01 + 0.99 * (2 + math.sqrt(2)) / 4)  # 0.855
    assert actual[7] == pytest.approx(0.7525)  # cos(pi/3) = 1/2
    assert actual[9] == pytest.approx(0.505)
    assert actual[11] == pytest.approx(0.2575)  # cos(2 pi/3) = -1/2
    assert actual[12] == pytest.approx(0.01 + 0.99 * (2 - math.sqrt(2)) / 4)  # 0.155
    assert actual[15] == pytest.approx(final)


def test_each_step_tells_the_model_the_fraction_of_training_done_before_it(tmp_path: Path, monkeypatch) -> None:
    """``set_training_progress`` gets ``step / steps`` with the 0-based step being taken: 0 at the first step."""
    seen: list[float] = []
    real = VideoSlotModel.set_training_progress

    def spy(self, progress):
        seen.append(progress)
        real(self, progress)

    monkeypatch.setattr(VideoSlotModel, "set_training_progress", spy)
    fit(tiny(steps=4), tmp_path, progress=False)
    assert seen == pytest.approx([0.0, 0.25, 0.5, 0.75])


def test_each_step_hands_every_loss_the_fraction_of_training_done_before_it(tmp_path: Path, monkeypatch) -> None:
    """A loss's ``progress`` (for losses with their own ramps) is ``step / steps`` too, for every configured loss."""
    seen: dict[str, list[float]] = {}
    real = Loss.__call__

    def spy(self, output, progress):
        seen.setdefault(type(self).__name__, []).append(progress)
        return real(self, output, progress)

    monkeypatch.setattr(Loss, "__call__", spy)
    config = tiny(steps=4)
    fit(config, tmp_path, progress=False)
    assert len(seen) == len(config.losses) == 2
    assert all(progress == pytest.approx([0.0, 0.25, 0.5, 0.75]) for progress in seen.values()), seen


def test_the_best_model_is_chosen_by_the_configured_select_metrics(tmp_path: Path) -> None:
    """With ``select_metrics=["video_ari"]`` the best evaluation is the one with the highest video ARI, and the
    selection records that it was chosen by that metric (not by the default video FG-ARI + mBO)."""
    config = tiny(steps=6, eval_every=1, select_metrics=["video_ari"])
    default_metrics = tuple(TrainConfig(name="x", model={}, losses=[]).select_metrics)
    assert default_metrics != ("video_ari",)
    result = fit(config, tmp_path, progress=False)
    evals = records(tmp_path, "eval")
    assert [record["step"] for record in evals] == [1, 2, 3, 4, 5, 6]

    def best_step(metrics: tuple[str, ...]) -> int:
        totals = [selection_score(_scores(record), metrics) for record in evals]
        return evals[totals.index(max(totals))]["step"]  # the first of equal scores wins

    chosen = best_step(("video_ari",))
    selection = json.loads((tmp_path / BEST_MODEL_DIR / SELECTION_FILE).read_text())
    assert selection["metrics"] == ["video_ari"]
    assert selection["step"] == chosen
    assert selection["score"] == pytest.approx(max(record["video_ari"] for record in evals))
    assert result.best is not None and result.best.step == chosen


def _scores(record: dict) -> DiscoveryScores:
    names = {field.name for field in dataclasses.fields(DiscoveryScores)}
    return DiscoveryScores(**{k: float("nan") if v is None else v for k, v in record.items() if k in names})


def test_data_parallel_ranks_draw_different_clips_at_every_step() -> None:
    dataset = range(1000)
    rank0 = list(StepBatchSampler(dataset, batch_size=4, seed=3, start_step=0, total_steps=8, rank=0))
    rank1 = list(StepBatchSampler(dataset, batch_size=4, seed=3, start_step=0, total_steps=8, rank=1))
    assert len(rank0) == len(rank1) == 8
    assert all(len(keys) == 4 for keys in rank0 + rank1)
    assert all(a != b for a, b in zip(rank0, rank1, strict=True))
    assert all(not {seed for _, seed in a} & {seed for _, seed in b} for a, b in zip(rank0, rank1, strict=True))
    again = list(StepBatchSampler(dataset, batch_size=4, seed=3, start_step=0, total_steps=8, rank=1))
    assert again == rank1  # a rank's clips depend only on the seed, the rank and the step


def test_each_process_trains_on_the_clips_of_its_own_rank() -> None:
    """``train_loader`` hands the process rank to the sampler: two ``torchrun`` processes draw different clips at
    every step, and a process started again with the same rank draws the same ones."""
    config = tiny(steps=3)
    clips = train_clips(config)

    def frames(rank: int, start_step: int = 0) -> list[torch.Tensor]:
        run = SimpleNamespace(step=start_step)  # the loader reads only the step of the run
        return [batch.frames for batch in train_loader(config, run, ProcessGroup(rank=rank, world_size=2), clips)]

    rank0, rank1 = frames(0), frames(1)
    assert len(rank0) == len(rank1) == 3
    assert all(not torch.equal(a, b) for a, b in zip(rank0, rank1, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(frames(1), rank1, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(frames(1, start_step=1), rank1[1:], strict=True))


@pytest.mark.parametrize("rank", [0, 1])
def test_a_sampler_started_at_a_later_step_yields_the_tail_of_one_started_at_zero(rank: int) -> None:
    dataset = range(1000)
    whole = list(StepBatchSampler(dataset, batch_size=3, seed=5, start_step=0, total_steps=9, rank=rank))
    resumed = StepBatchSampler(dataset, batch_size=3, seed=5, start_step=4, total_steps=9, rank=rank)
    assert len(resumed) == 5
    assert list(resumed) == whole[4:]
