"""Queries and slots of another dtype than the encoder's features are a contract violation named at the component
that returned them: a float64 or float16 transition used to pass the per-step checks and fail one call later inside
Slot Attention ("mixed dtype (CPU): all inputs must share same datatype"), naming no plugin. So are encoder
features or raw tokens of another dtype than the frames (a float64 encoder failed inside the initializer). Under
autocast (mixed precision) outputs legitimately come in several dtypes, and a model run wholly in float64 (the
export's float64 reference) is fine."""

from __future__ import annotations

import re

import pytest
import torch

from plugins import ComponentRegistry, build_plugin_manager
from plugins.builtin.encoders.small_cnn import SmallCNNEncoder
from plugins.builtin.initializers.gaussian import GaussianShared
from plugins.builtin.transitions.identity import IdentityTransition
from plugins.interfaces import ContractViolation
from plugins.testing import build_tiny, check_model_component, tiny_model_config, tiny_video
from plugins.types import EncoderOutput, Features, Frames, InitializerOutput


class DoubleTransition(IdentityTransition):
    """Returns the previous slots in float64."""

    name = "double_transition"

    def forward(self, past_slots: list[torch.Tensor], past_features: list[torch.Tensor]) -> torch.Tensor:
        return past_slots[-1].double()


class HalfTransition(IdentityTransition):
    """Returns the previous slots in float16."""

    name = "half_transition"

    def forward(self, past_slots: list[torch.Tensor], past_features: list[torch.Tensor]) -> torch.Tensor:
        return past_slots[-1].half()


class BFloatTransition(IdentityTransition):
    """Returns the previous slots in bfloat16, as an autocast matmul would on the CPU."""

    name = "bfloat_transition"

    def forward(self, past_slots: list[torch.Tensor], past_features: list[torch.Tensor]) -> torch.Tensor:
        return past_slots[-1].to(torch.bfloat16)


class DoubleInitializer(GaussianShared):
    """The shared Gaussian's queries in float64."""

    name = "double_initializer"

    def forward(self, features: Features) -> InitializerOutput:
        return InitializerOutput(queries=super().forward(features).queries.double())


class DoubleEncoder(SmallCNNEncoder):
    """The small CNN's features and raw tokens in float64."""

    name = "double_encoder"

    def forward(self, frames: Frames) -> EncoderOutput:
        output = super().forward(frames)
        return EncoderOutput(features=output.features.double(), grid=output.grid, raw=output.raw.double())


class DoubleRawEncoder(SmallCNNEncoder):
    """The small CNN with its raw tokens in float64."""

    name = "double_raw_encoder"

    def forward(self, frames: Frames) -> EncoderOutput:
        output = super().forward(frames)
        return EncoderOutput(features=output.features, grid=output.grid, raw=output.raw.double())


class BFloatEncoder(SmallCNNEncoder):
    """The small CNN's features and raw tokens in bfloat16, as autocast layers would give them on the CPU."""

    name = "bfloat_encoder"

    def forward(self, frames: Frames) -> EncoderOutput:
        output = super().forward(frames)
        features, raw = output.features.to(torch.bfloat16), output.raw.to(torch.bfloat16)
        return EncoderOutput(features=features, grid=output.grid, raw=raw)


def _registry() -> ComponentRegistry:
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.external_plugins = {"their_plugin": "their-plugin 1.2"}
    registry.current_plugin = "their_plugin"
    for cls in (DoubleTransition, HalfTransition, BFloatTransition):
        registry.add_transition(cls)
    registry.add_initializer(DoubleInitializer)
    for encoder in (DoubleEncoder, DoubleRawEncoder, BFloatEncoder):
        registry.add_encoder(encoder)
    registry.current_plugin = "<direct>"
    return registry


def _named(role: str, cls: type) -> str:
    return re.escape(f"the {role} '{cls.name}' ({cls.__module__}.{cls.__qualname__}, registered by plugin ")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("cls", "dtype"), [(DoubleTransition, "torch.float64"), (HalfTransition, "torch.float16")])
def test_a_transition_returning_another_dtype_is_named(cls: type[IdentityTransition], dtype: str) -> None:
    registry = _registry()
    model = build_tiny(tiny_model_config(transition={"name": cls.name}), registry).train()
    with pytest.raises(ContractViolation, match=_named("transition", cls)) as raised:
        model(tiny_video(model))
    message = str(raised.value)
    assert f"returned queries of dtype {dtype}, expected torch.float32, the dtype of the encoder's features" in message


def test_an_initializer_returning_float64_queries_is_named() -> None:
    model = build_tiny(tiny_model_config(initializer="double_initializer"), _registry())
    with pytest.raises(ContractViolation, match=_named("initializer", DoubleInitializer)) as raised:
        model(tiny_video(model))
    assert "returned queries of dtype torch.float64, expected torch.float32" in str(raised.value)


def test_check_model_component_names_the_dtype_not_a_mixed_dtype_runtime_error() -> None:
    with pytest.raises(ContractViolation, match=_named("transition", DoubleTransition)):
        check_model_component(tiny_model_config(transition={"name": "double_transition"}), "transition", _registry())


def test_a_model_run_wholly_in_float64_passes() -> None:
    model = build_tiny(tiny_model_config()).double().eval()
    with torch.no_grad():
        output = model(tiny_video(model).double())
    assert output.slots.dtype == torch.float64


def test_under_autocast_outputs_of_the_autocast_dtype_pass() -> None:
    """Mixed precision (``training.step`` autocasts on CUDA; the CPU's autocast stands in for it here): the
    transition's bfloat16 queries are the autocast dtype, not a contract violation."""
    model = build_tiny(tiny_model_config(transition={"name": "bfloat_transition"}), _registry()).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(tiny_video(model))
    assert output.slots.shape == (2, 4, 3, 16)
    with pytest.raises(ContractViolation, match=_named("transition", BFloatTransition)):  # the same, without it
        model(tiny_video(model))


@pytest.mark.parametrize(("cls", "what"), [(DoubleEncoder, "features"), (DoubleRawEncoder, "raw")])
def test_an_encoder_returning_another_dtype_than_the_frames_is_named(cls: type[SmallCNNEncoder], what: str) -> None:
    encoder = {"name": cls.name, "kwargs": tiny_model_config()["encoder"]["kwargs"]}
    model = build_tiny(tiny_model_config(encoder=encoder), _registry())
    with pytest.raises(ContractViolation, match=_named("encoder", cls)) as raised:
        model(tiny_video(model))
    assert f"returned {what} of dtype torch.float64, expected torch.float32, the dtype of the frames" in str(
        raised.value
    )


def test_under_autocast_encoder_outputs_of_the_autocast_dtype_pass() -> None:
    encoder = {"name": "bfloat_encoder", "kwargs": tiny_model_config()["encoder"]["kwargs"]}
    model = build_tiny(tiny_model_config(encoder=encoder), _registry()).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(tiny_video(model))
    assert output.steps[0].features.dtype == torch.bfloat16
    with pytest.raises(ContractViolation, match=_named("encoder", BFloatEncoder)):  # the same, without it
        model(tiny_video(model))
