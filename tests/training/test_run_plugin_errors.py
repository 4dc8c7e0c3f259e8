"""``training.run`` with a plugin author's mistakes: a config key a component does not take is a one-line error
(rc 2), a loss that returns no scalar is named, and a run whose first step breaks a contract leaves no files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from plugins import build_plugin_manager
from plugins.builtin.transitions.identity import IdentityTransition
from plugins.interfaces import Loss
from plugins.registry import ComponentRegistry
from plugins.types import Features, Slots, VideoOutput
from training.configs import get_config
from training.run import main
from training.run_folder import TRAIN_CONFIG_FILE


class NeedsDepth(IdentityTransition):
    name = "needs_depth"

    def __init__(self, depth: int = 1) -> None:
        super().__init__()
        self.depth = depth


class AddsSlot(IdentityTransition):
    """Breaks the transition contract: one more query than there are slots."""

    name = "adds_slot"

    def forward(self, past_slots: tuple[Slots, ...], past_features: tuple[Features, ...]) -> Slots:
        """The previous slots and a copy of the first."""
        del past_features  # Unused.
        return torch.cat([past_slots[-1], past_slots[-1][:, :1]], dim=1)


class PerChannelLoss(Loss):
    """Breaks the loss contract: one value per colour channel instead of a scalar."""

    name = "per_channel_mse"

    def forward(self, output: VideoOutput, progress: float) -> torch.Tensor:
        """The squared error per channel."""
        del progress  # Unused.
        return (output.reconstruction - output.target).pow(2).mean(dim=(0, 1, 2))


@pytest.fixture
def plugin_registry(monkeypatch: pytest.MonkeyPatch) -> ComponentRegistry:
    """The registry training.run uses, with the built-ins and this file's components (registered directly)."""
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.current_plugin = "author_plugin"
    for transition in (NeedsDepth, AddsSlot):
        registry.add_transition(transition)
    registry.add_loss(PerChannelLoss)
    registry.current_plugin = "<direct>"
    monkeypatch.setattr("plugins.manager._default_registry", registry)
    return registry


def _config_file(tmp_path: Path, model: dict[str, object] | None = None, loss: str | None = None) -> Path:
    """A ``--config`` JSON file: the tiny experiment for 2 steps without evaluation, with ``model`` keys replaced
    and ``loss`` as its only loss."""
    config = get_config("tiny").to_json()
    config.update(steps=2, eval_every=0)
    config["model"].update(model or {})
    if loss is not None:
        config["losses"] = [{"name": loss, "weight": 1.0, "kwargs": {}}]
    config["data"]["val_videos"] = 0
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(
    ("model", "says"),
    [
        (
            {"transition": {"name": "needs_depth", "kwargs": {"depht": 2}}},
            "error: the transition 'needs_depth' (test_run_plugin_errors.NeedsDepth, registered by plugin "
            "'author_plugin') got unknown config keys ['depht']; it accepts ['depth']\n",
        ),
        (
            {"transition": {"name": "needs_depth", "kwargs": {"slot_dim": 2}}},
            "got unknown config keys ['slot_dim']; it accepts ['depth'] (slot_dim: set by the model",
        ),
        ({"num_slot": 3}, "error: the model config has unknown keys ['num_slot']; it accepts ['encoder', "),
    ],
    ids=["misspelt_kwarg", "wiring_kwarg", "misspelt_model_key"],
)
def test_a_config_key_nothing_takes_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], plugin_registry: ComponentRegistry, model: dict, says: str
) -> None:
    run = tmp_path / "run"
    assert main(["--config", str(_config_file(tmp_path, model)), "--out", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err
    assert not run.exists()


@pytest.mark.parametrize(
    ("model", "loss", "says"),
    [
        (
            None,
            "per_channel_mse",
            "error: the loss 'per_channel_mse' (test_run_plugin_errors.PerChannelLoss, registered by plugin "
            "'author_plugin') returned a tensor of shape (3,); a loss must return a scalar tensor (shape ())",
        ),
        (
            {"transition": "adds_slot"},
            None,
            "error: the transition 'adds_slot' (test_run_plugin_errors.AddsSlot, registered by plugin "
            "'author_plugin') returned queries of shape (2, 5, 32), expected (2, 4, 32)",
        ),
    ],
    ids=["non_scalar_loss", "transition_adds_a_slot"],
)
def test_a_contract_broken_in_the_first_step_is_named_and_leaves_no_run_behind(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    plugin_registry: ComponentRegistry,
    model: dict | None,
    loss: str | None,
    says: str,
) -> None:
    run = tmp_path / "run"
    config = _config_file(tmp_path, model, loss)
    assert main(["--config", str(config), "--out", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err, err
    assert not run.exists()

    run.mkdir()  # a folder that holds something else already (hidden: a folder of other files is refused as
    (run / ".notes").write_text("mine")  # --out before the run starts): only what the run created goes
    assert main(["--config", str(config), "--out", str(run), "--no-progress"]) == 2
    assert says in capsys.readouterr().err, "the run started, and its first step broke the contract"
    assert sorted(path.name for path in run.iterdir()) == [".notes"]


def test_a_resumed_run_keeps_its_files_when_its_first_step_breaks_a_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], plugin_registry: ComponentRegistry
) -> None:
    """A run started earlier (its train_config.json, command.txt, metrics) is never cleared by --resume."""
    run = tmp_path / "run"
    config = _config_file(tmp_path, loss="per_channel_mse")
    run.mkdir()
    (run / TRAIN_CONFIG_FILE).write_text(json.dumps(json.loads(config.read_text()), indent=2) + "\n")
    kept = {"command.txt": "python -m training.run --config experiment.json\n", "metrics.jsonl": ""}
    for name, text in kept.items():
        (run / name).write_text(text)
    assert main(["--config", str(config), "--out", str(run), "--resume", "--no-progress"]) == 2
    assert "error: the loss 'per_channel_mse'" in capsys.readouterr().err
    assert {name: (run / name).read_text() for name in kept} == kept
    assert (run / TRAIN_CONFIG_FILE).is_file()
