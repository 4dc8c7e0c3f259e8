"""Every shipped training config's model, and every registered component, exports and passes the checks.

Random weights are enough: export is about the computation graph. Each export runs the operator check and a
short recurrent parity run (2 frames; the full 50-frame run is covered by ``test_export_graphs.py``) with
row-wise checks at batch sizes 1 and 3.

Size reductions, to keep CI fast on two CPU cores: the ``smoothsa_dinov2`` config is exported with a 1-block
ViT at 56 px (``depth=1``, ``input_size=56``, frames 56x56 so no resize is needed); its decoder, slot count
and width are the shipped ones. The per-component models are the service tests' tiny model with one role
swapped (the DINOv2 entry with 28x28 frames for its 28 px ViT: a bicubic resize is not TensorRT's, see
``test_model_that_tensorrt_cannot_take_is_rejected``).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch

from plugins import VideoSlotModel
from plugins.registry import ComponentKind
from training.configs import available, get_config
from training.export import ExportOptions, export_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import SERVICE_TINY_MODEL

pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")

ROLES = ("encoders", "initializers", "aggregators", "transitions", "decoders")
FAST = ExportOptions(parity_frames=2, parity_videos=1, batch_sizes=(1, 3))
FEATURE_DECODER = {"name": "mlp", "kwargs": {"hidden_dims": [16]}}

#: (role, registered name) -> what to change in the tiny model to use that component.
COMPONENT_MODELS: dict[tuple[str, str], dict[str, Any]] = {
    ("encoders", "small_cnn"): {},
    ("encoders", "dinov2"): {
        "encoder": {"name": "dinov2", "kwargs": {"depth": 1, "input_size": 28}},
        "image_size": [28, 28],
        "decoder": FEATURE_DECODER,
    },
    ("initializers", "gaussian_shared"): {"initializer": "gaussian_shared"},
    ("initializers", "gaussian_per_slot"): {"initializer": "gaussian_per_slot"},
    ("initializers", "smoothsa_preheat"): {"initializer": "smoothsa_preheat"},
    ("aggregators", "slot_attention"): {"aggregator": {"name": "slot_attention", "kwargs": {"mlp_multiplier": 0}}},
    ("transitions", "randsfq"): {"transition": {"name": "randsfq", "kwargs": {"window": 3}}},
    ("transitions", "transformer"): {"transition": "transformer"},
    ("transitions", "identity"): {"transition": "identity"},
    ("decoders", "broadcast"): {},
    ("decoders", "mlp"): {"decoder": FEATURE_DECODER},
    ("decoders", "ar_random"): {"decoder": {"name": "ar_random", "kwargs": {"dim": 16, "depth": 2}}},
}


def shipped_model(name: str) -> dict[str, Any]:
    config = copy.deepcopy(get_config(name).model)
    if config["encoder"]["name"] == "dinov2":
        config["encoder"]["kwargs"].update(depth=1, input_size=56)
        config["image_size"] = [56, 56]
    return config


def component_model(kind: str, name: str) -> dict[str, Any]:
    return {**copy.deepcopy(SERVICE_TINY_MODEL), **copy.deepcopy(COMPONENT_MODELS[(kind, name)])}


def export_and_check(config: dict[str, Any], tmp_path: Path) -> None:
    torch.manual_seed(0)
    VideoSlotModel(**config).save_pretrained(tmp_path / "model")
    manifest = export_model(tmp_path / "model", tmp_path / "export", FAST)
    parity = manifest.parity["onnxruntime"]
    assert parity.passed, parity
    for graph in manifest.graphs.values():
        assert not set(graph.operators) & {"If", "Loop", "Scan"}
    for name in manifest.graphs:
        proto = onnx.load(str(tmp_path / "export" / manifest.graphs[name].file))
        constants = {initializer.name for initializer in proto.graph.initializer}
        reshapes = [node for node in proto.graph.node if node.op_type == "Reshape"]
        computed = [node.name for node in reshapes if node.input[1] not in constants]
        assert not computed, f"{name}: reshapes with a target shape computed at run time: {computed}"


@pytest.mark.parametrize("name", available())
def test_every_shipped_config_exports(name, tmp_path):
    export_and_check(shipped_model(name), tmp_path)


COMPONENTS = sorted(COMPONENT_MODELS)


@pytest.mark.parametrize(("kind", "name"), COMPONENTS, ids=[f"{k}-{n}" for k, n in COMPONENTS])
def test_every_registered_component_exports(kind, name, tmp_path):
    export_and_check(component_model(kind, name), tmp_path)


def test_the_component_list_covers_the_registry(registry):
    """A newly registered encoder/initializer/aggregator/transition/decoder must get an export test."""
    registered = {(kind, name) for kind in ROLES for name in registry.names(ComponentKind(kind))}
    assert registered <= set(COMPONENTS), registered - set(COMPONENTS)
