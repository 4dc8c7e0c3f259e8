"""ComponentRegistry: names, kinds, and errors that list what is known."""

from __future__ import annotations

import re

import pytest
import torch

from plugins import ComponentRegistry, RegistryError
from plugins.builtin.aggregators.slot_attention import SlotAttention
from plugins.builtin.transitions.identity import IdentityTransition


class Shadow(IdentityTransition):
    name = "identity"


class BadName(IdentityTransition):
    name = "BadName"


def test_duplicate_name_names_both_owners() -> None:
    registry = ComponentRegistry()
    registry.current_plugin = "first"
    registry.add_transition(IdentityTransition)
    registry.current_plugin = "second"
    with pytest.raises(RegistryError, match=r"duplicate transition name 'identity'.*'first'.*'second'"):
        registry.add_transition(Shadow)


def test_unknown_name_lists_known_names_and_suggests(registry: ComponentRegistry) -> None:
    with pytest.raises(RegistryError) as error:
        registry.get("aggregators", "slot_atention")
    assert "Known aggregators: slot_attention" in str(error.value)
    assert "Did you mean 'slot_attention'" in str(error.value)


def test_name_must_be_snake_case() -> None:
    with pytest.raises(RegistryError, match="snake_case"):
        ComponentRegistry().add_transition(BadName)


def test_class_must_fit_its_kind() -> None:
    with pytest.raises(RegistryError, match="must subclass"):
        ComponentRegistry().add("transitions", SlotAttention)


def test_unknown_kind_is_rejected_with_the_kinds_listed() -> None:
    with pytest.raises(RegistryError, match="unknown component kind 'samplers'; the kinds are encoders"):
        ComponentRegistry().names("samplers")
    with pytest.raises(RegistryError, match="Did you mean 'decoders'"):
        ComponentRegistry().get("decoder", "broadcast")


def test_as_dict_covers_every_kind_sorted(registry: ComponentRegistry) -> None:
    listing = registry.as_dict()
    assert list(listing) == ["encoders", "initializers", "aggregators", "transitions", "decoders", "losses", "heads"]
    assert all(names == sorted(names) for names in listing.values())


def test_contract_attributes_are_checked_when_a_class_is_registered() -> None:
    from plugins.builtin.decoders.mlp import MLPFeatureDecoder
    from plugins.builtin.encoders.dinov2 import DINOv2Encoder

    class NoTargetKind(MLPFeatureDecoder):
        name = "no_target_kind"
        target_kind = None  # type: ignore[assignment]

    with pytest.raises(RegistryError, match="needs a class attribute `target_kind`, 'pixels' or 'features'"):
        ComponentRegistry().add_decoder(NoTargetKind)

    class WeightsRequired(DINOv2Encoder):
        name = "weights_required"

        def __init__(self, weights: str) -> None:  # required, yet left out of config.json on save
            super().__init__(weights=weights)

    with pytest.raises(RegistryError, match="weights in initial_weight_arguments must have a default"):
        ComponentRegistry().add_encoder(WeightsRequired)


def test_constructor_arguments_the_model_cannot_pass_are_refused_at_registration() -> None:
    """The model passes every argument by keyword: a positional-only wiring argument (or one without a default)
    would register and then fail in every model that uses it."""

    class PositionalOnly(IdentityTransition):
        name = "positional_only"

        def __init__(self, slot_dim: int, /, scale: float = 1.0) -> None:
            super().__init__()

    with pytest.raises(RegistryError, match=r"PositionalOnly .*its constructor takes slot_dim positional-only"):
        ComponentRegistry().add_transition(PositionalOnly)

    class PositionalWithDefault(IdentityTransition):  # built, saved, but never loaded: config.json is by keyword
        name = "positional_with_default"

        def __init__(self, factor: float = 0.5, /, slot_dim: int = 0) -> None:
            super().__init__()

    with pytest.raises(RegistryError, match=r"PositionalWithDefault .*takes factor positional-only"):
        ComponentRegistry().add_transition(PositionalWithDefault)


def test_a_keyword_only_initial_weight_argument_needs_a_default_too() -> None:
    """Left out of config.json on save like any other: without a default the saved model could not load."""
    from plugins.builtin.encoders.dinov2 import DINOv2Encoder

    class KeywordOnlyWeights(DINOv2Encoder):
        name = "keyword_only_weights"

        def __init__(self, image_size: tuple[int, int], *, weights: str) -> None:
            super().__init__(image_size=image_size, weights=weights)

    with pytest.raises(RegistryError, match="weights in initial_weight_arguments must have a default"):
        ComponentRegistry().add_encoder(KeywordOnlyWeights)


class NeedsWidth(IdentityTransition):
    name = "needs_width"

    def __init__(self, width: int) -> None:  # not a wiring argument: a config must give it
        super().__init__()


class ForgotSuper(IdentityTransition):
    name = "forgot_super"

    def __init__(self, slot_dim: int) -> None:
        self.scale = torch.nn.Linear(slot_dim, slot_dim)  # before nn.Module.__init__ has run


class RejectsConfig(IdentityTransition):
    name = "rejects_config"

    def __init__(self, slot_dim: int, factor: float = 0.5) -> None:
        super().__init__()
        if not 0 < factor < 1:
            raise ValueError(f"factor must lie in (0, 1), got {factor}")


@pytest.mark.parametrize(
    ("cls", "kwargs", "cause", "says"),
    [
        (
            NeedsWidth,
            {},
            TypeError,
            r"from config \{\} and wiring \{\}: TypeError: .*missing 1 required positional argument: 'width' \(the "
            r"model fills in only the arguments named num_slots, slot_dim for transitions",
        ),
        (
            ForgotSuper,
            {},
            AttributeError,
            r"from config \{\} and wiring \{'slot_dim': 16\}: AttributeError: .*\(does ForgotSuper.__init__ call "
            r"super\(\).__init__\(\)",
        ),
        (
            RejectsConfig,
            {"factor": 2.0},
            ValueError,
            r"from config \{'factor': 2.0\} and wiring \{'slot_dim': 16\}: ValueError: factor must lie in \(0, 1\)",
        ),
    ],
    ids=["missing_argument", "forgot_super_init", "rejected_config"],
)
def test_a_failing_constructor_is_named_with_its_class_plugin_and_arguments(
    cls: type[IdentityTransition], kwargs: dict[str, float], cause: type[Exception], says: str
) -> None:
    registry = ComponentRegistry()
    registry.external_plugins = {"their_plugin": "their-plugin 1.2"}
    registry.current_plugin = "their_plugin"
    registry.add_transition(cls)
    component = re.escape(
        f"cannot build the transition '{cls.name}' ({cls.__module__}.{cls.__qualname__}, registered by plugin "
        "'their_plugin' (their-plugin 1.2))"
    )
    with pytest.raises(RegistryError, match=f"{component} {says}") as raised:
        registry.build("transitions", cls.name, kwargs, {"num_slots": 3, "slot_dim": 16})
    assert isinstance(raised.value, ValueError), "a rejected config stays a ValueError for the callers handling one"
    assert isinstance(raised.value.__cause__, cause)


def test_an_encoder_may_take_feature_dim_as_configuration(registry: ComponentRegistry) -> None:
    """The model derives feature_dim, feature_grid and target_dim from the encoder, so they are not wiring for
    encoders; the components the model does wire them into still may not set them."""
    from tiny_configs import model_config

    from plugins import VideoSlotModel, build_plugin_manager
    from plugins.builtin.encoders.small_cnn import SmallCNNEncoder

    class WidthEncoder(SmallCNNEncoder):
        name = "width_encoder"

        def __init__(self, image_size: tuple[int, int], feature_dim: int = 16) -> None:
            super().__init__(image_size, channels=[8, 8], strides=[2, 2], out_dim=feature_dim)

    own = build_plugin_manager(load_entry_points=False).registry
    own.add_encoder(WidthEncoder)
    config = model_config(encoder={"name": "width_encoder", "kwargs": {"feature_dim": 8}})
    model = VideoSlotModel(**config, registry=own)
    assert model.encoder.feature_dim == 8
    assert model(torch.rand(1, 2, 3, 16, 16)).steps[0].features.shape[-1] == 8
    config = model_config(aggregator={"name": "slot_attention", "kwargs": {"feature_dim": 8}})
    with pytest.raises(TypeError, match=r"the aggregator 'slot_attention' .*: feature_dim is set by the model"):
        VideoSlotModel(**config, registry=own)


def test_a_name_two_installed_plugins_register_is_ambiguous_until_one_is_gone() -> None:
    registry = ComponentRegistry()
    registry.external_plugins = {"first": "first-dist 1.0", "second": "second-dist 2.0"}
    registry.current_plugin = "first"
    registry.add_transition(IdentityTransition)
    registry.current_plugin = "second"
    registry.add_transition(Shadow)
    with pytest.raises(RegistryError) as raised:
        registry.get("transitions", "identity")
    message, first, second = str(raised.value), "plugins.builtin.transitions.identity.IdentityTransition", "Shadow"
    assert "the transition name 'identity' is ambiguous" in message
    assert f"plugin 'first' (first-dist 1.0): {first}" in message
    assert f"plugin 'second' (second-dist 2.0): {Shadow.__module__}.{second}" in message
    assert f"SLOTSTREAM_DISABLE_PLUGINS=second to use {first}" in message
    assert f"SLOTSTREAM_DISABLE_PLUGINS=first to use {Shadow.__module__}.{second}" in message
    assert registry.names("transitions") == []
    assert registry.ambiguous() == {("transitions", "identity"): ["first", "second"]}
    registry.remove_plugin("second")  # what the manager does when that plugin's registration fails later on
    assert registry.get("transitions", "identity") is IdentityTransition
    assert registry.owner("transitions", "identity") == "first" and registry.ambiguous() == {}
