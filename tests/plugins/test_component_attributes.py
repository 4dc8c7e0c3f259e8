"""The attributes a component's kind promises after construction are checked when the model is built, and a saved
model whose component no loaded plugin registers fails to load with its file and plugin named."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from tiny_configs import model_config
from tiny_model import TINY_MODEL

from plugins import RegistryError, VideoSlotModel, build_plugin_manager
from plugins.builtin.decoders.broadcast import SpatialBroadcastDecoder
from plugins.builtin.encoders.small_cnn import SmallCNNEncoder
from plugins.testing import ContractViolation


class NoFeatureDimEncoder(SmallCNNEncoder):
    name = "no_feature_dim_encoder"

    def __init__(self, image_size: tuple[int, int], **kwargs: Any) -> None:
        super().__init__(image_size, **kwargs)
        del self.feature_dim


class NoRawDimEncoder(SmallCNNEncoder):
    name = "no_raw_dim_encoder"

    def __init__(self, image_size: tuple[int, int], **kwargs: Any) -> None:
        super().__init__(image_size, **kwargs)
        del self.raw_dim


class FlatGridEncoder(SmallCNNEncoder):
    name = "flat_grid_encoder"

    def __init__(self, image_size: tuple[int, int], **kwargs: Any) -> None:
        super().__init__(image_size, **kwargs)
        self.feature_grid = 16  # type: ignore[assignment]  # a token count, not (h, w)


class NoTargetGridDecoder(SpatialBroadcastDecoder):
    name = "no_target_grid_decoder"

    def __init__(self, slot_dim: int, image_size: tuple[int, int], **kwargs: Any) -> None:
        super().__init__(slot_dim, image_size, **kwargs)
        del self.target_grid


BREAKERS = [
    ("encoder", NoFeatureDimEncoder, "must set the attribute feature_dim to a positive integer in its constructor; "
     "it does not set it"),
    ("encoder", NoRawDimEncoder, "must set the attribute raw_dim to a positive integer in its constructor; it does "
     "not set it"),
    ("encoder", FlatGridEncoder, "must set the attribute feature_grid to an (h, w) pair of integers in its "
     "constructor; it set it to 16"),
    ("decoder", NoTargetGridDecoder, "must set the attribute target_grid to an (h, w) pair of integers in its "
     "constructor; it does not set it"),
]  # fmt: skip


def _registry_with(role: str, cls: type) -> Any:
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.current_plugin = "outside_plugin"
    registry.add(f"{role}s", cls)
    return registry


@pytest.mark.parametrize(("role", "cls", "problem"), BREAKERS, ids=[c.name for _, c, _ in BREAKERS])
def test_a_missing_promised_attribute_is_named_when_the_model_is_built(role: str, cls: type, problem: str) -> None:
    """Not an AttributeError at construction or on the first forward: a ContractViolation naming the component,
    its class, its plugin and the attribute."""
    config = model_config(**{role: {"name": cls.name, "kwargs": TINY_MODEL[role]["kwargs"]}})
    where = f"the {role} '{cls.name}' ({cls.__module__}.{cls.__qualname__}, registered by plugin 'outside_plugin') "
    with pytest.raises(ContractViolation, match=re.escape(where + problem)):
        VideoSlotModel(**config, registry=_registry_with(role, cls))


class RenamedEncoder(SmallCNNEncoder):
    name = "renamed_encoder"


def test_a_saved_model_of_a_missing_plugin_names_its_file_and_plugin(tmp_path) -> None:
    config = model_config(encoder={"name": RenamedEncoder.name, "kwargs": TINY_MODEL["encoder"]["kwargs"]})
    VideoSlotModel(**config, registry=_registry_with("encoder", RenamedEncoder)).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["plugins"]["encoder"] == "outside_plugin"

    without = build_plugin_manager(load_entry_points=False).registry
    with pytest.raises(RegistryError) as raised:
        VideoSlotModel.from_pretrained(tmp_path, registry=without)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'config.json'}: unknown encoder name 'renamed_encoder'"), message
    assert "it was saved with components of the plugin(s) 'outside_plugin'" in message
    assert "SLOTSTREAM_DISABLE_PLUGINS" in message


def test_a_saved_model_of_builtins_only_names_no_plugin(tmp_path, tiny_model: VideoSlotModel) -> None:
    """Built-in plugins are not what is missing, so the hint does not list them."""
    tiny_model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["model"]["encoder"]["name"] = "small_cnm"  # a typo: nothing registers it
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(RegistryError, match=r"Did you mean 'small_cnn'") as raised:
        VideoSlotModel.from_pretrained(tmp_path)
    assert "saved with components" not in str(raised.value)
