"""A diverging run stops before it keeps weights that are not finite: a step whose loss is finite but whose
gradient is not (clipping would multiply every gradient by NaN) stops the run like a non-finite loss, no
checkpoint of non-finite weights is written (also when an evaluation fails on them), the error suggests only a
checkpoint whose weights are finite and names the loss terms that are not, and under a gradient scaler a step it
skips for its non-finite gradients is not divergence."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from plugins import build_plugin_manager
from plugins.interfaces import Loss
from plugins.registry import ComponentRegistry
from plugins.types import VideoOutput
from training.checkpoint import NonFiniteWeights, TrainerState, list_checkpoints, save_checkpoint
from training.config import LossTerm, TrainConfig
from training.configs import get_config
from training.distributed import init_from_environment
from training.loop import fit
from training.run_state import build_run
from training.step import NonFinite, divergence_message


class InfiniteSlope(Loss):
    """From ``from_progress`` on, a loss whose value is 0 but whose gradient is not finite (the square root's slope
    at 0); before it, 0 with a zero gradient."""

    name = "infinite_slope"

    def __init__(self, from_progress: float = 0.0) -> None:
        super().__init__()
        self.from_progress = from_progress

    def forward(self, output: VideoOutput, progress: float) -> torch.Tensor:
        """0, with an infinite slope once training has reached ``from_progress``."""
        mean = output.reconstruction.mean()
        if progress < self.from_progress:
            return mean * 0.0
        return torch.sqrt(mean - mean.detach())  # sqrt(0) = 0; its derivative there is infinite


class InfiniteValue(Loss):
    """A loss whose value is infinite from the first step (a loss plugin's bug, or data it cannot score)."""

    name = "infinite_value"

    def forward(self, output: VideoOutput, progress: float) -> torch.Tensor:
        """Infinity, attached to the graph."""
        del progress  # Unused.
        return output.reconstruction.mean() * 0.0 + float("inf")


@pytest.fixture
def registry() -> ComponentRegistry:
    """The built-in components and this file's losses."""
    built = build_plugin_manager(load_entry_points=False).registry
    built.add_loss(InfiniteSlope)
    built.add_loss(InfiniteValue)
    return built


def _tiny(steps: int, extra_loss: LossTerm, **settings: object) -> TrainConfig:
    """The tiny experiment with ``extra_loss`` added, checkpointing every step unless ``settings`` say otherwise."""
    config = get_config("tiny")
    data = dataclasses.replace(config.data, val_videos=1, val_frames=2)
    settings = {"eval_every": 0, "checkpoint_every": 1, "keep_checkpoints": 10, "log_every": 1, **settings}
    return dataclasses.replace(config, steps=steps, data=data, losses=[*config.losses, extra_loss], **settings)  # type: ignore[arg-type]


def _finite_file(checkpoint: Path) -> bool:
    return all(
        bool(torch.isfinite(tensor).all()) for tensor in load_file(str(checkpoint / "model.safetensors")).values()
    )


def test_a_finite_loss_with_a_non_finite_gradient_stops_the_run_before_that_step_is_kept(
    tmp_path: Path, registry: ComponentRegistry
) -> None:
    slope_from_step_three = LossTerm("infinite_slope", 1.0, {"from_progress": 0.3})  # step index 2 of 6
    with pytest.raises(FloatingPointError) as raised:
        fit(_tiny(6, slope_from_step_three), tmp_path, progress=False, registry=registry)
    message = str(raised.value)
    said = r"^the gradient norm is (nan|inf) at step 3: training diverged \(the loss, \S+, is finite\), and no check"
    assert re.match(said, message), message
    checkpoints = list_checkpoints(tmp_path)
    assert [path.name for path in checkpoints] == ["step-00000001", "step-00000002"]
    assert all(_finite_file(path) for path in checkpoints)
    assert f"--init-from {checkpoints[-1]} and a lower --lr" in message, message
    assert not (tmp_path / "model").exists()


def test_an_evaluation_failing_on_non_finite_weights_writes_no_checkpoint_of_them(
    tmp_path: Path, registry: ComponentRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under torchrun a rank never stops alone (:func:`training.step.diverged`), so non-finite weights reach the
    evaluation and the checkpoint of their step: the evaluation's error must not write them."""
    import training.loop as loop

    monkeypatch.setattr(loop, "diverged", lambda run, group: False)  # as under torchrun
    slope_from_step_three = LossTerm("infinite_slope", 1.0, {"from_progress": 0.3})
    config = _tiny(6, slope_from_step_three, eval_every=3, checkpoint_every=3)
    with pytest.raises(FloatingPointError, match=r"^the weights are not finite at step 3: training diverged"):
        fit(config, tmp_path, progress=False, registry=registry)
    assert list_checkpoints(tmp_path) == []  # step 3 was the first due
    assert not (tmp_path / "model").exists()


def test_a_checkpoint_of_non_finite_weights_is_refused_and_keeps_the_older_ones(tmp_path: Path) -> None:
    config = get_config("tiny")
    run = build_run(
        config, build_plugin_manager(load_entry_points=False).registry, "cpu", init_from_environment("cpu")
    )
    state = TrainerState(step=1, optimizer={}, scheduler={}, rng={})
    save_checkpoint(tmp_path, run.model, state, keep=1)
    with torch.no_grad():
        next(run.model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteWeights, match=r"the weights of step 2 are not finite"):
        save_checkpoint(tmp_path, run.model, dataclasses.replace(state, step=2), keep=1)
    assert [path.name for path in list_checkpoints(tmp_path)] == ["step-00000001"]
    assert not [path for path in (tmp_path / "checkpoints").iterdir() if path.name.startswith(".")]


def test_an_infinite_constant_a_component_keeps_in_a_buffer_does_not_stop_its_checkpoints(tmp_path: Path) -> None:
    config = get_config("tiny")
    run = build_run(
        config, build_plugin_manager(load_entry_points=False).registry, "cpu", init_from_environment("cpu")
    )
    run.model.decoder.register_buffer("mask", torch.full((2,), -math.inf))  # a causal mask's kind of constant
    save_checkpoint(tmp_path, run.model, TrainerState(step=1, optimizer={}, scheduler={}, rng={}), keep=1)
    parameters = {name for name, _ in run.model.named_parameters()}
    message = divergence_message(NonFinite("the loss is nan"), 2, tmp_path, parameters=parameters)
    assert f"--init-from {list_checkpoints(tmp_path)[0]} and a lower --lr" in message, message


def test_the_error_suggests_the_newest_checkpoint_whose_weights_are_finite(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    for step, value in ((2, 1.0), (4, 1.0), (6, float("nan"))):  # step 6: written before this check existed
        (root / f"step-{step:08d}").mkdir(parents=True)
        save_file({"w": torch.full((3,), value)}, str(root / f"step-{step:08d}" / "model.safetensors"))
    message = divergence_message(NonFinite("the loss is nan"), 7, tmp_path)
    assert f"--init-from {root / 'step-00000004'} and a lower --lr" in message, message
    assert "(step-00000006 cannot be read or holds weights that are not finite)" in message, message


def test_a_non_finite_loss_at_the_first_step_names_its_term_and_weight_and_not_the_learning_rate(
    tmp_path: Path, registry: ComponentRegistry
) -> None:
    with pytest.raises(FloatingPointError) as raised:
        fit(_tiny(4, LossTerm("infinite_value", 2.5)), tmp_path, progress=False, registry=registry)
    message = str(raised.value)
    assert message.startswith("the loss is inf at step 1 (not finite: infinite_value = inf at weight 2.5)"), message
    assert "before any update of the weights" in message and "--lr" not in message, message
    assert list_checkpoints(tmp_path) == []


@pytest.fixture
def mixed_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs built for the test train with torch's gradient scaler on the CPU, as mixed precision does on CUDA."""
    import training.loop as loop

    real_build = loop.build_run

    def with_a_scaler(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        run = real_build(*args, **kwargs)  # type: ignore[arg-type]
        run.scaler = torch.amp.GradScaler("cpu")
        return run

    monkeypatch.setattr(loop, "build_run", with_a_scaler)


@pytest.mark.usefixtures("mixed_precision")
def test_a_step_the_gradient_scaler_skips_for_non_finite_gradients_is_not_divergence(
    tmp_path: Path, registry: ComponentRegistry
) -> None:
    """Mixed precision, with torch's gradient scaler on the CPU: a step with non-finite gradients is skipped
    (the weights stay as they were) and the run trains on to its final model."""
    slope_at_step_three = LossTerm("infinite_slope", 1.0, {"from_progress": 0.3})
    result = fit(_tiny(4, slope_at_step_three), tmp_path, progress=False, registry=registry)
    assert result.step == 4 and result.model_dir is not None
    assert all(_finite_file(path) for path in list_checkpoints(tmp_path))
    assert _finite_file(result.model_dir)


@pytest.mark.usefixtures("mixed_precision")
def test_under_mixed_precision_a_loss_not_finite_from_the_start_is_not_blamed_on_the_learning_rate(
    tmp_path: Path, registry: ComponentRegistry
) -> None:
    """The gradient scaler skips every step of the streak that stops the run, so when it began at the first step
    no update happened: the message points at the losses and the data, as without mixed precision."""
    with pytest.raises(FloatingPointError) as raised:
        fit(_tiny(12, LossTerm("infinite_value", 1.0)), tmp_path, progress=False, registry=registry)
    message = str(raised.value)
    assert "at step 10" in message and "before any update of the weights" in message and "--lr" not in message
