"""A loss term whose value no trainable weight reaches trains nothing: built with ``.item()``, under
``torch.no_grad()`` or only from detached tensors, it used to pass the loss checks (a scalar tensor) and leave
the run to train on the other terms alone. ``optimisation_step`` warns about it, naming the loss, its class and
its plugin; a term at weight 0 (logged only) and the built-in losses are not warned about."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from plugins import build_plugin_manager
from plugins.interfaces import Loss
from plugins.registry import ComponentRegistry
from plugins.types import VideoOutput
from training.config import LossTerm, TrainConfig
from training.configs import get_config
from training.distributed import init_from_environment
from training.run_state import build_run
from training.step import LossWithoutGradientWarning, optimisation_step

PLUGIN = "loss_author_plugin"


class ItemLoss(Loss):
    """The slots' mean square through ``.item()``: a constant to the optimiser."""

    name = "item_loss"

    def forward(self, output: VideoOutput, progress: float) -> torch.Tensor:
        del progress  # Unused.
        return torch.tensor(output.slots.pow(2).mean().item())


class NoGradLoss(Loss):
    """The reconstruction error computed under ``torch.no_grad()``."""

    name = "no_grad_loss"

    def forward(self, output: VideoOutput, progress: float) -> torch.Tensor:
        del progress  # Unused.
        with torch.no_grad():
            return (output.reconstruction - output.target).pow(2).mean()


@pytest.fixture
def losses() -> ComponentRegistry:
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.current_plugin = PLUGIN
    registry.add_loss(ItemLoss)
    registry.add_loss(NoGradLoss)
    return registry


def _step(registry: ComponentRegistry, *extra: LossTerm) -> dict[str, float]:
    """One optimisation step of the tiny experiment with ``extra`` loss terms, on random frames."""
    config: TrainConfig = get_config("tiny")
    config = dataclasses.replace(config, losses=[*config.losses, *extra])
    torch.manual_seed(0)
    run = build_run(config, registry, "cpu", init_from_environment("cpu"))
    height, width = run.model.image_size
    return optimisation_step(config, run, torch.rand(2, 3, 3, height, width), "cpu")


@pytest.mark.parametrize("cls", [ItemLoss, NoGradLoss])
def test_a_loss_no_weight_reaches_is_named_in_a_warning(losses: ComponentRegistry, cls: type[Loss]) -> None:
    with pytest.warns(LossWithoutGradientWarning) as warned:
        terms = _step(losses, LossTerm(cls.name, 2.0))
    (warning,) = [w for w in warned if issubclass(w.category, LossWithoutGradientWarning)]
    message = str(warning.message)
    assert message.startswith(
        f"the loss '{cls.name}' ({__name__}.{cls.__qualname__}, registered by plugin '{PLUGIN}') returned a value "
        "that no trainable weight reaches (it does not require grad), so at weight 2.0 it trains nothing"
    ), message
    assert cls.name in terms  # the run goes on, training on the other terms


def test_built_in_losses_and_a_term_at_weight_zero_are_not_warned_about(losses: ComponentRegistry) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", LossWithoutGradientWarning)
        _step(losses, LossTerm("item_loss", 0.0))


def test_the_warning_comes_once_per_loss_not_at_every_step(losses: ComponentRegistry) -> None:
    """The scheduler's step resets Python's record of warnings shown, so the run itself counts them."""
    config: TrainConfig = get_config("tiny")
    config = dataclasses.replace(config, losses=[*config.losses, LossTerm("item_loss", 2.0)])
    torch.manual_seed(0)
    run = build_run(config, losses, "cpu", init_from_environment("cpu"))
    height, width = run.model.image_size
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("default")  # what a run sees: each place once, unless the record is reset
        for _ in range(4):
            optimisation_step(config, run, torch.rand(2, 3, 3, height, width), "cpu")
    assert [issubclass(w.category, LossWithoutGradientWarning) for w in warned].count(True) == 1
