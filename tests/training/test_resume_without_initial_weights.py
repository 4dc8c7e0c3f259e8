"""A resumed run takes its weights from its checkpoint, so it needs no file its encoder started from (a relative
``--encoder-weights`` path, say, no longer found once the run is resumed from another directory or machine)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from plugins import build_plugin_manager
from plugins.builtin.encoders.small_cnn import SmallCNNEncoder
from training.configs import get_config
from training.loop import fit


class SmallCnnFromFile(SmallCNNEncoder):
    """``small_cnn`` whose initial weights may come from a file, as ``dinov2``'s do."""

    name = "small_cnn_from_file_example"
    initial_weight_arguments = frozenset({"weights"})

    def __init__(
        self,
        image_size: tuple[int, int],
        channels: list[int],
        strides: list[int],
        out_dim: int = 64,
        weights: str | None = None,
    ) -> None:
        super().__init__(image_size, channels, strides, out_dim=out_dim)
        if weights is not None:
            self.load_state_dict(load_file(weights))


def test_a_resume_does_not_read_the_initial_weights_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.add_encoder(SmallCnnFromFile)
    config = get_config("tiny")
    encoder = config.model["encoder"]
    kwargs = {**encoder["kwargs"], "image_size": config.model["image_size"]}
    torch.manual_seed(1)
    save_file(SmallCNNEncoder(**kwargs).state_dict(), str(tmp_path / "start.safetensors"))
    monkeypatch.chdir(tmp_path)  # the path is relative, as typed
    model = {
        **config.model,
        "encoder": {"name": SmallCnnFromFile.name, "kwargs": {**encoder["kwargs"], "weights": "start.safetensors"}},
    }
    data = dataclasses.replace(config.data, val_videos=0)
    config = dataclasses.replace(config, model=model, data=data, steps=4, checkpoint_every=2)
    fit(config, tmp_path / "run", progress=False, registry=registry, stop_after=2)
    (tmp_path / "start.safetensors").unlink()  # the run moved, or resumes from elsewhere
    resumed = fit(config, tmp_path / "run", progress=False, registry=registry, resume=True)
    assert (resumed.started_step, resumed.step) == (2, 4)
