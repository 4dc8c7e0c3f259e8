"""Settings that cannot train are refused when the configuration is built, naming the setting: a gradient clip of 0
(no update at all) or below (gradient ascent), an unknown clipping scope, a learning rate beyond float32, schedule
fractions outside [0, 1], and a loss weight that is not finite."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from training.config import MAX_LR, LossTerm, OptimConfig, TrainConfig, read_train_config
from training.configs import get_config
from training.run import main
from training.schedule import warmup_cosine


@pytest.mark.parametrize("grad_clip", [0.0, -1.0, math.inf, math.nan])
def test_a_gradient_clip_that_cannot_train_is_refused(grad_clip: float) -> None:
    with pytest.raises(ValueError, match=r"^optimiser settings: grad_clip must be None \(no clipping\) or a finite"):
        OptimConfig(grad_clip=grad_clip)


@pytest.mark.parametrize("grad_clip", [None, 0.05, 1])
def test_no_clip_or_a_positive_one_is_accepted(grad_clip: float | None) -> None:
    assert OptimConfig(grad_clip=grad_clip).grad_clip == grad_clip


def test_an_unknown_clipping_scope_is_refused_when_the_configuration_is_built() -> None:
    with pytest.raises(ValueError, match=r"grad_clip_scope must be one of global, component, got 'per_layer'"):
        OptimConfig(grad_clip_scope="per_layer")  # type: ignore[arg-type]
    assert OptimConfig(grad_clip=0.05, grad_clip_scope="component").grad_clip_scope == "component"  # smoothsa_cnn's


@pytest.mark.parametrize("lr", [0.0, -1e-4, 1e38, 1e39, math.inf, math.nan])
def test_a_learning_rate_the_optimiser_cannot_use_is_refused(lr: float) -> None:
    """1e38 passes "finite and above 0" but overflows Adam's float32 arithmetic at the first step."""
    with pytest.raises(ValueError, match=r"^optimiser settings: lr must be a number above 0 and at most 1e\+37"):
        OptimConfig(lr=lr)


def test_the_largest_accepted_learning_rate_takes_a_first_adam_step_without_overflow() -> None:
    parameter = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([parameter], lr=OptimConfig(lr=MAX_LR).lr)
    parameter.grad = torch.ones(3)
    optimizer.step()  # raises on overflow


def test_the_command_line_refuses_a_learning_rate_beyond_float32(tmp_path: Path, capsys) -> None:
    assert main(["--config", "tiny", "--lr", "1e39", "--steps", "1", "--out", str(tmp_path / "run")]) == 2
    assert "lr must be a number above 0 and at most" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["warmup_fraction", "final_lr_fraction"])
@pytest.mark.parametrize("value", [-1.0, 1.5, 5.0, 1e3, math.inf, math.nan])
def test_a_schedule_fraction_outside_zero_to_one_is_refused(name: str, value: float) -> None:
    """-1 as the end fraction would run the last steps as gradient ascent, 1e3 (for "LR/1000") grow the rate 1000x
    past the peak, and a warm-up of 5 (for 5 %) keep the rate below a fifth of it."""
    with pytest.raises(ValueError, match=rf"^optimiser settings: {name} must be a fraction in \[0, 1\], got"):
        OptimConfig(**{name: value})


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_the_schedule_fractions_at_their_bounds_give_rates_within_zero_and_the_peak(value: float) -> None:
    optim = OptimConfig(warmup_fraction=value, final_lr_fraction=value)
    rates = [warmup_cosine(step, 40, optim.warmup_fraction, optim.final_lr_fraction) for step in range(40)]
    assert all(0 <= rate <= 1 for rate in rates), rates


@pytest.mark.parametrize("weight", [math.inf, -math.inf, math.nan])
def test_a_loss_weight_that_is_not_finite_is_refused_naming_the_loss(weight: float) -> None:
    with pytest.raises(ValueError, match=r"^loss 'preheat_mse': weight must be a finite number, got"):
        LossTerm("preheat_mse", weight)
    assert LossTerm("preheat_mse", 0).weight == 0  # a loss switched off is a choice


def test_a_config_file_with_a_zero_gradient_clip_is_a_one_line_error_before_the_run(tmp_path: Path, capsys) -> None:
    config = get_config("tiny").to_json()
    config["optim"]["grad_clip"] = 0
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(config))
    assert main(["--config", str(path), "--steps", "2", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} cannot be read as a training configuration (ValueError: optimiser"), err
    assert "grad_clip must be None (no clipping) or a finite number above 0, got 0)" in err, err
    assert not (tmp_path / "run").exists()


def test_a_saved_configuration_with_a_refused_setting_names_its_file(tmp_path: Path) -> None:
    saved = tmp_path / "train_config.json"
    config = get_config("tiny").to_json()
    config["losses"][0]["weight"] = math.nan
    saved.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"^{saved} cannot be read as a training configuration \(ValueError: loss"):
        read_train_config(saved)


def test_every_shipped_configuration_passes_the_checks() -> None:
    from training import configs

    names = [path.stem for path in Path(configs.__file__).parent.glob("*.py") if not path.stem.startswith("_")]
    assert names
    for name in names:
        assert isinstance(get_config(name), TrainConfig), name
