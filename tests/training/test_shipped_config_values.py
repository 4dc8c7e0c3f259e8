"""The shipped CPU experiments hold the settings their docstrings and training/README.md state.

A config that trains (``test_configs.py``) can still be the wrong experiment: an ablation with the default's
iteration counts, a lost preheat weight or a clipping scope that stops the model from learning would all train.
The values below are the documented ones, written out rather than read from another config.
"""

from __future__ import annotations

from typing import Any

import pytest

from training.configs import get_config

#: name -> (first_iters, later_iters, initializer, transition, loss weights)
ITERATIONS_AND_LOSSES: dict[str, tuple[int, int, str, str, dict[str, float]]] = {
    "smoothsa_cnn": (3, 1, "smoothsa_preheat", "randsfq", {"reconstruction_mse": 1.0, "preheat_mse": 100.0}),
    "smoothsa_cnn_1p1": (1, 1, "smoothsa_preheat", "randsfq", {"reconstruction_mse": 1.0, "preheat_mse": 100.0}),
    "smoothsa_cnn_3p3": (3, 3, "smoothsa_preheat", "randsfq", {"reconstruction_mse": 1.0, "preheat_mse": 100.0}),
    "smoothsa_cnn_no_preheat": (3, 1, "gaussian_shared", "randsfq", {"reconstruction_mse": 1.0}),
    "savi_cnn": (1, 1, "gaussian_shared", "transformer", {"reconstruction_mse": 1.0}),
    "smoothsa_cnn_contrast": (
        3,
        1,
        "smoothsa_preheat",
        "randsfq",
        {"reconstruction_mse": 1.0, "preheat_mse": 100.0, "slot_contrast": 0.01},
    ),
}


def _name(component: str | dict[str, Any]) -> str:
    return component if isinstance(component, str) else component["name"]


@pytest.mark.parametrize("name", sorted(ITERATIONS_AND_LOSSES))
def test_cpu_experiments_hold_their_documented_iterations_components_and_loss_weights(name: str) -> None:
    first, later, initializer, transition, weights = ITERATIONS_AND_LOSSES[name]
    config = get_config(name)
    model = config.model
    assert (model["first_iters"], model["later_iters"]) == (first, later)
    assert (_name(model["initializer"]), _name(model["transition"])) == (initializer, transition)
    assert {term.name: term.weight for term in config.losses} == weights


@pytest.mark.parametrize("name", sorted(ITERATIONS_AND_LOSSES))
def test_cpu_experiments_share_the_default_schedule_clipping_and_data(name: str) -> None:
    """Adam at 4e-4 with 5 % warm-up and cosine decay to LR/1000, per-component clipping at 0.05 (the recipe's
    one departure, without which the preheat loss's gradient stalls everything else), 6-frame clips of 8."""
    config = get_config(name)
    optim = config.optim
    assert (optim.lr, optim.warmup_fraction, optim.final_lr_fraction) == (4e-4, 0.05, 1e-3)
    assert (optim.grad_clip, optim.grad_clip_scope) == (0.05, "component")
    assert (config.data.spec, config.data.clip_length, config.data.batch_size) == ("synthetic:medium", 6, 8)


def test_savi_baseline_uses_savi_s_corrector() -> None:
    """SAVi-S's corrector: one iteration, no Slot Attention MLP, epsilon 1e-8, no bi-level truncation."""
    aggregator = get_config("savi_cnn").model["aggregator"]
    assert aggregator["kwargs"] == {"truncation": "none", "mlp_multiplier": 0, "epsilon": 1e-8}


def test_the_default_preheater_stays_detached_and_samples_fixed_noise_at_inference() -> None:
    initializer = get_config("smoothsa_cnn").model["initializer"]
    assert initializer["kwargs"] == {"detach_fraction": 1.0, "query_eval_noise": "fixed"}
