"""``from_pretrained`` refuses a weights file whose tensor names differ from the model's: a tensor left out would
keep its random initial value, and a stray one would be silently ignored."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from plugins import ComponentRegistry, VideoSlotModel


def _edit_weights(directory: Path, drop: bool, add: bool) -> tuple[str, str]:
    """Delete the first tensor of ``directory``'s model.safetensors and/or add a stray one; returns their names."""
    path = directory / "model.safetensors"
    tensors = load_file(str(path))
    dropped, stray = sorted(tensors)[0], "decoder.stray_weight"
    if drop:
        del tensors[dropped]
    if add:
        tensors[stray] = torch.zeros(3)
    save_file(tensors, str(path))
    return dropped, stray


@pytest.mark.parametrize(("drop", "add"), [(True, False), (False, True), (True, True)])
def test_a_weights_file_with_missing_or_extra_tensors_is_refused(
    tmp_path: Path, registry: ComponentRegistry, tiny_model: VideoSlotModel, drop: bool, add: bool
) -> None:
    tiny_model.save_pretrained(tmp_path)
    dropped, stray = _edit_weights(tmp_path, drop, add)
    missing, unexpected = [dropped] if drop else [], [stray] if add else []
    expected = (
        f"{tmp_path / 'model.safetensors'} does not match {tmp_path / 'config.json'}: "
        f"missing {missing}, unexpected {unexpected}"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        VideoSlotModel.from_pretrained(tmp_path, registry=registry)


def test_the_unedited_weights_load(tmp_path: Path, registry: ComponentRegistry, tiny_model: VideoSlotModel) -> None:
    """The check above refuses the edits, not every file: the saved weights as they are load and match."""
    tiny_model.save_pretrained(tmp_path)
    loaded = VideoSlotModel.from_pretrained(tmp_path, registry=registry)
    saved = tiny_model.state_dict()
    assert all(torch.equal(value, saved[name]) for name, value in loaded.state_dict().items())
