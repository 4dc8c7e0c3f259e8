"""A component's initial weight arguments (the ``dinov2`` encoder's ``weights`` path) are never saved in
``config.json``: a model directory that gives one is refused on load, naming the key and the file, instead of
having the constructor open a path on this machine. Building a model from a config, as training does, still
takes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_configs import DINOV2, FEATURE_DECODER, model_config

from plugins import ComponentRegistry, VideoSlotModel


@pytest.fixture
def saved_dinov2(tmp_path: Path, registry: ComponentRegistry) -> tuple[Path, Path]:
    """A tiny dinov2 model built with its initial weights from a file, as training builds one, and saved: the
    model directory and the initial weights file."""
    torch.manual_seed(0)
    donor = VideoSlotModel(**model_config(encoder=DINOV2, decoder=FEATURE_DECODER), registry=registry)
    weights = tmp_path / "dinov2.safetensors"
    save_file({key: value.contiguous() for key, value in donor.encoder.backbone.state_dict().items()}, str(weights))
    encoder = {"name": "dinov2", "kwargs": {**DINOV2["kwargs"], "weights": str(weights)}}
    model = VideoSlotModel(**model_config(encoder=encoder, decoder=FEATURE_DECODER), registry=registry)
    assert torch.equal(model.encoder.backbone.pos_embed, donor.encoder.backbone.pos_embed)  # the file was loaded
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model", weights


def test_a_saved_model_loads_and_its_config_holds_no_initial_weights(saved_dinov2, registry) -> None:
    folder, _ = saved_dinov2
    assert "weights" not in json.loads((folder / "config.json").read_text())["model"]["encoder"]["kwargs"]
    VideoSlotModel.from_pretrained(folder, registry=registry)


@pytest.mark.parametrize("path", ["/etc/passwd", "initial weights"])
def test_a_config_that_gives_initial_weights_is_refused_naming_the_key_and_the_file(
    saved_dinov2, registry, path
) -> None:
    folder, weights = saved_dinov2
    given = str(weights) if path == "initial weights" else path  # a real weights file is refused as well
    payload = json.loads((folder / "config.json").read_text())
    payload["model"]["encoder"]["kwargs"]["weights"] = given
    (folder / "config.json").write_text(json.dumps(payload))
    with pytest.raises(ValueError) as refused:
        VideoSlotModel.from_pretrained(folder, registry=registry)
    message = str(refused.value)
    assert message.startswith(f"{folder / 'config.json'}: model.encoder.kwargs.weights is {given!r}"), message
    assert "save_pretrained never records" in message and "delete the key" in message, message


def test_a_null_initial_weights_argument_loads_nothing_and_passes(saved_dinov2, registry) -> None:
    folder, _ = saved_dinov2
    payload = json.loads((folder / "config.json").read_text())
    payload["model"]["encoder"]["kwargs"]["weights"] = None
    (folder / "config.json").write_text(json.dumps(payload))
    VideoSlotModel.from_pretrained(folder, registry=registry)
