"""A tiny model for every built-in component: the conformance suites are generated from this table.

Each entry names the component and the model config to test it in (the tiny default model with that
component swapped in, plus whatever the component needs, such as a feature decoder for feature losses).
"""

from __future__ import annotations

import copy
from typing import Any

from tiny_model import TINY_MODEL

FEATURE_DECODER = {"name": "mlp", "kwargs": {"hidden_dims": [16]}}
DINOV2 = {"name": "dinov2", "kwargs": {"depth": 1, "input_size": 28}}


def model_config(**overrides: Any) -> dict[str, Any]:
    """The tiny model config with some roles replaced."""
    config = copy.deepcopy(TINY_MODEL)
    config.update(copy.deepcopy(overrides))
    return config


TINY_CONFIGS: dict[tuple[str, str], dict[str, Any]] = {
    ("encoders", "small_cnn"): model_config(),
    ("encoders", "dinov2"): model_config(encoder=DINOV2, decoder=FEATURE_DECODER),
    ("initializers", "gaussian_shared"): model_config(initializer="gaussian_shared"),
    ("initializers", "gaussian_per_slot"): model_config(initializer="gaussian_per_slot"),
    ("initializers", "smoothsa_preheat"): model_config(),
    ("aggregators", "slot_attention"): model_config(),
    ("transitions", "randsfq"): model_config(),
    ("transitions", "transformer"): model_config(transition="transformer"),
    ("transitions", "identity"): model_config(transition="identity"),
    ("decoders", "broadcast"): model_config(),
    ("decoders", "mlp"): model_config(decoder=FEATURE_DECODER),
    ("decoders", "ar_random"): model_config(decoder={"name": "ar_random", "kwargs": {"dim": 16, "depth": 2}}),
    ("losses", "reconstruction_mse"): model_config(),
    ("losses", "preheat_mse"): model_config(),
    ("losses", "slot_contrast"): model_config(),
    ("losses", "time_similarity"): model_config(
        decoder={"name": "mlp", "kwargs": {"hidden_dims": [16], "extra_dim": 16}}
    ),
    ("losses", "attention_distillation"): model_config(),
    ("heads", "slotformer"): model_config(),
    ("heads", "property_probe"): model_config(),
    ("heads", "aloe"): model_config(),
}
"""(kind, name) -> model config exercising that component (for a head: the model whose slots it reads)."""

TINY_HEAD_KWARGS: dict[str, dict[str, Any]] = {
    "slotformer": {"history": 2, "rollout": 2, "model_dim": 16, "layers": 1, "heads": 2, "ffn_dim": 32},
    "property_probe": {"categorical": {"shape": 3}, "continuous": {"position": 2}},
    "aloe": {"words": 8, "answers": 5, "model_dim": 16, "layers": 1, "heads": 2, "ffn_dim": 32, "word_dim": 6},
}
"""Head name -> its constructor arguments besides ``slot_dim`` (the tiny model's)."""
