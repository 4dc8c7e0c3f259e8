"""A ``config.json`` whose ``model`` section lacks a field ``save_pretrained`` writes, or holds one of the wrong
type, is refused naming the file and the field, instead of loading with a constructor default (a model trained at
32x32 served at 64x64) or failing later inside a component; a file of another format version says whether
slotstream is too old for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plugins import VideoSlotModel
from plugins.model_sizes import MAX_ITERATIONS, MAX_SLOTS
from plugins.testing import tiny_model_config
from service.backends.manifest import Manifest, ManifestError


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    VideoSlotModel(**tiny_model_config()).save_pretrained(folder)
    return folder


def _edited(folder: Path, edit: Any) -> Path:
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("field", ["image_size", "num_slots", "first_iters", "later_iters", "decoder"])
def test_a_missing_field_is_named(saved: Path, field: str) -> None:
    _edited(saved, lambda config: config["model"].pop(field))
    with pytest.raises(ValueError) as refused:
        VideoSlotModel.from_pretrained(saved)
    assert str(refused.value).startswith(f"{saved / 'config.json'}: model.{field} missing, which save_pretrained")


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("image_size", "24", "image_size must be two integers (height, width), got '24'"),
        ("image_size", [24], "image_size must be two integers (height, width), got [24]"),
        ("image_size", [24.5, 24.0], "image_size must be two integers >= 1 (height, width), got [24.5, 24.0]"),
        ("first_iters", True, "first_iters must be an integer, got True"),
        ("later_iters", 1.5, "later_iters must be an integer, got 1.5"),
    ],
)
def test_a_field_of_the_wrong_type_is_named(saved: Path, field: str, value: Any, said: str) -> None:
    _edited(saved, lambda config: config["model"].__setitem__(field, value))
    with pytest.raises(ValueError) as refused:
        VideoSlotModel.from_pretrained(saved)
    assert str(refused.value) == f"{saved / 'config.json'}: its 'model' section does not describe a model: {said}"


def test_numpy_integers_are_integers() -> None:
    import numpy as np

    config = {**tiny_model_config(), "image_size": (np.int64(24), np.int64(24)), "num_slots": np.int32(3)}
    assert VideoSlotModel(**config).image_size == (24, 24)


def test_a_newer_format_says_to_upgrade_and_a_foreign_file_says_so(saved: Path) -> None:
    _edited(saved, lambda config: config.__setitem__("format_version", 2))
    with pytest.raises(ValueError, match=r"format_version 2 was written by a newer slotstream; .* upgrade slotstream"):
        VideoSlotModel.from_pretrained(saved)
    _edited(saved, lambda config: config.pop("format_version"))
    with pytest.raises(ValueError, match="no format_version: not a model config written by slotstream"):
        VideoSlotModel.from_pretrained(saved)
    with pytest.raises(ManifestError, match="format_version 9 was written by a newer slotstream"):
        Manifest.from_json(json.dumps({"format_version": 9}))


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("num_slots", 0, "num_slots must be in [1, 256] (the service's segmentation map holds a slot index in one"),
        ("num_slots", 100000, "num_slots must be in [1, 256]"),
        ("first_iters", 1_000_000_000, "first_iters must be in [1, 100] (the published recipes use 1 to 7), got"),
        ("later_iters", 101, "later_iters must be in [1, 100]"),
        ("image_size", [20000, 20000], "image_size must be at most 4096 a side (the service's default frame limit)"),
    ],
)
def test_a_size_past_its_bound_is_refused_before_anything_is_built(
    saved: Path, field: str, value: Any, said: str
) -> None:
    """A billion iterations would hang the first frame for weeks and 20000x20000 frames fail in the allocator, and
    a config.json is a file a user may edit: both are refused when the model is built, naming the file."""
    _edited(saved, lambda config: config["model"].__setitem__(field, value))
    with pytest.raises(ValueError) as refused:
        VideoSlotModel.from_pretrained(saved)
    prefix = f"{saved / 'config.json'}: its 'model' section holds a value the model refuses: "
    assert str(refused.value).startswith(prefix + said), str(refused.value)


def test_the_largest_counts_build_a_model() -> None:
    config = {**tiny_model_config(), "num_slots": MAX_SLOTS, "first_iters": MAX_ITERATIONS, "later_iters": 1}
    assert VideoSlotModel(**config).num_slots == MAX_SLOTS
