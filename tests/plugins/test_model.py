"""VideoSlotModel: the recurrent primitive, the 3+1 split, the stop-gradient and persistence."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from safetensors.torch import save_file
from tiny_configs import DINOV2, FEATURE_DECODER, model_config
from tiny_model import TINY_MODEL

from plugins import RegistryError, SlotState, VideoSlotModel, build_plugin_manager
from plugins.builtin.aggregators.slot_attention import SlotAttention
from plugins.builtin.decoders.broadcast import SpatialBroadcastDecoder
from plugins.builtin.encoders.small_cnn import SmallCNNEncoder
from plugins.builtin.initializers.preheat import SmoothSAPreheat
from plugins.builtin.transitions.identity import IdentityTransition
from plugins.registry import ComponentConfigError
from plugins.testing import ContractViolation, check_model_component


def test_forward_equals_the_loop_of_first_step_and_step(tiny_model: VideoSlotModel, video: torch.Tensor) -> None:
    tiny_model.eval()
    with torch.no_grad():
        whole = tiny_model(video)
        out, state = tiny_model.first_step(video[:, 0])
        looped = [out]
        for t in range(1, video.shape[1]):
            out, state = tiny_model.step(video[:, t], state)
            looped.append(out)
    torch.testing.assert_close(whole.slots, torch.stack([o.slots for o in looped], 1), rtol=0, atol=0)
    torch.testing.assert_close(whole.masks, torch.stack([o.masks for o in looped], 1), rtol=0, atol=0)


def test_state_carried_across_chunks_equals_one_long_video(tiny_model: VideoSlotModel, video: torch.Tensor) -> None:
    tiny_model.eval()
    with torch.no_grad():
        whole = tiny_model(video)
        head = tiny_model(video[:, :2])
        tail = tiny_model(video[:, 2:], state=SlotState(slots=head.state.slots.clone()))
    torch.testing.assert_close(torch.cat([head.slots, tail.slots], 1), whole.slots, rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([head.masks, tail.masks], 1), whole.masks, rtol=0, atol=0)


def test_inference_state_is_only_the_previous_slots(tiny_model: VideoSlotModel, video: torch.Tensor) -> None:
    tiny_model.eval()
    with torch.no_grad():
        out, state = tiny_model.first_step(video[:, 0])
    assert state.past_slots == () and state.past_features == ()
    assert state.slots.shape == (video.shape[0], tiny_model.num_slots, tiny_model.slot_dim)
    assert torch.equal(state.slots, out.slots)


@pytest.mark.parametrize(("first_iters", "later_iters"), [(3, 1), (1, 1), (3, 3), (2, 4)])
def test_first_frame_runs_first_iters_and_later_frames_later_iters(
    first_iters: int, later_iters: int, registry, video: torch.Tensor
) -> None:
    config = model_config(first_iters=first_iters, later_iters=later_iters)
    model = VideoSlotModel(**config, registry=registry).eval()
    with torch.no_grad():
        output = model(video)
    iterations = [step.attention.shape[1] for step in output.steps]
    assert iterations == [first_iters] + [later_iters] * (video.shape[1] - 1)


def test_preheater_learns_only_from_the_preheat_loss(
    tiny_model: VideoSlotModel, video: torch.Tensor, registry
) -> None:
    tiny_model.train()
    preheater = tiny_model.initializer
    block = {n: p for n, p in preheater.named_parameters() if n != "query_log_std"}

    output = tiny_model(video)
    registry.build("losses", "reconstruction_mse", {})(output, 0.5).backward()
    assert all(p.grad is None or not torch.any(p.grad != 0) for p in block.values()), "stop-gradient leaked"

    tiny_model.zero_grad(set_to_none=True)
    tiny_model.set_training_progress(0.5)  # past the detach phase: the preheat loss also reaches the encoder
    output = tiny_model(video)
    registry.build("losses", "preheat_mse", {})(output, 0.5).backward()
    starved = [n for n, p in block.items() if p.grad is None or not torch.any(p.grad != 0)]
    assert not starved
    assert any(p.grad is not None and torch.any(p.grad != 0) for p in tiny_model.encoder.parameters())


def test_preheat_detach_schedule_shields_the_encoder_early(tiny_model: VideoSlotModel, video, registry) -> None:
    tiny_model.train()
    tiny_model.set_training_progress(0.05)  # first 10 %: the preheater reads detached features
    registry.build("losses", "preheat_mse", {})(tiny_model(video), 0.05).backward()
    assert all(p.grad is None or not torch.any(p.grad != 0) for p in tiny_model.encoder.parameters())


def test_training_window_feeds_randsfq_history(tiny_model: VideoSlotModel, video: torch.Tensor, monkeypatch) -> None:
    """In training, the RandSF.Q transition of frame t receives the slots of the last ``min(t, window - 1)``
    frames and as many feature maps (the current frame's last), not just the previous frame's."""
    received: list[tuple[int, int]] = []
    transition = type(tiny_model.transition)
    real = transition.forward

    def spy(self, past_slots, past_features):
        received.append((len(past_slots), len(past_features)))
        return real(self, past_slots, past_features)

    monkeypatch.setattr(transition, "forward", spy)
    tiny_model.train()
    output = tiny_model(video)
    window, frames = tiny_model.transition.window, video.shape[1]
    assert frames > window, "the clip must outlast the window for the cap to show"
    expected = [min(t, window - 1) for t in range(1, frames)]  # frames 1 .. T-1; frame 0 has no transition
    assert expected == [1, 2, 2] and received == [(n, n) for n in expected]
    assert len(output.state.past_slots) == window - 1 == len(output.state.past_features)


def test_config_round_trips_through_json(tiny_model: VideoSlotModel, registry) -> None:
    config = json.loads(json.dumps(tiny_model.config))
    rebuilt = VideoSlotModel(**config, registry=registry)
    assert rebuilt.config == tiny_model.config
    assert config["encoder"]["name"] == TINY_MODEL["encoder"]["name"]


def test_from_pretrained_names_the_missing_file(tmp_path, tiny_model: VideoSlotModel) -> None:
    tiny_model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        VideoSlotModel.from_pretrained(tmp_path)


def test_from_pretrained_rejects_mismatched_weights(tmp_path, registry, tiny_model: VideoSlotModel) -> None:
    tiny_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model"]["slot_dim"] = 8
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError, match=r"model\.safetensors does not fit .*config\.json: \d+ tensors have other"
    ) as error:
        VideoSlotModel.from_pretrained(tmp_path, registry=registry)
    assert "\n" not in str(error.value) and "size mismatch" not in str(error.value)  # one line, not PyTorch's list
    assert "put back the config.json saved with these weights" in str(error.value)


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda config: config.pop("model"), "expected a 'model' section"),
        (lambda config: config["model"].update(bogus=1), "does not describe a model.*bogus"),
        (lambda config: config["model"].update(num_slots="3"), "does not describe a model"),
        (lambda config: config["model"].pop("encoder"), "model.encoder missing"),
    ],
)
def test_from_pretrained_names_the_config_a_bad_model_section_comes_from(
    tmp_path, registry, tiny_model: VideoSlotModel, edit, says
) -> None:
    tiny_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    edit(config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"config\.json.*{says}"):
        VideoSlotModel.from_pretrained(tmp_path, registry=registry)


def test_from_pretrained_says_what_is_wrong_with_the_folder_it_is_given(tmp_path, registry, tiny_model) -> None:
    """A folder that does not exist, a file, and a training run folder (whose models are in ``best/`` and
    ``model/``) each get their own message, which every command loading a model passes on."""
    with pytest.raises(FileNotFoundError, match=r"nothing does not exist: a model directory holds config\.json"):
        VideoSlotModel.from_pretrained(tmp_path / "nothing", registry=registry)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"file is a file, not a model directory"):
        VideoSlotModel.from_pretrained(tmp_path / "file", registry=registry)
    tiny_model.save_pretrained(tmp_path / "run" / "best")
    with pytest.raises(FileNotFoundError, match=r"run looks like a training run: pass --model .*best"):
        VideoSlotModel.from_pretrained(tmp_path / "run", registry=registry)


def test_from_pretrained_keeps_the_registry_error_of_a_component_argument_its_class_lacks(
    tmp_path, registry, tiny_model: VideoSlotModel
) -> None:
    """A component section with an argument its class does not take is the registry's ``ComponentConfigError``
    (a ``RegistryError``, which the command-line tools report in one line), with the file named."""
    tiny_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model"]["decoder"]["kwargs"] = {**config["model"]["decoder"].get("kwargs", {}), "bogus_width": 3}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ComponentConfigError, match=r"config\.json: .*bogus_width"):
        VideoSlotModel.from_pretrained(tmp_path, registry=registry)


def test_the_frame_fit_round_trips_and_a_bad_one_names_the_file(tmp_path, registry, tiny_model) -> None:
    """``frame_fit`` is saved in ``config.json``'s ``input`` section only when set, and loaded back; a section
    that is not an object or names no fit is refused with the file's name."""
    tiny_model.save_pretrained(tmp_path)
    assert "input" not in json.loads((tmp_path / "config.json").read_text())
    assert VideoSlotModel.from_pretrained(tmp_path, registry=registry).frame_fit is None
    tiny_model.frame_fit = "pad"
    tiny_model.save_pretrained(tmp_path)
    payload = json.loads((tmp_path / "config.json").read_text())
    assert payload["input"] == {"frame_fit": "pad"}
    assert VideoSlotModel.from_pretrained(tmp_path, registry=registry).frame_fit == "pad"
    for section, problem in (
        ({"frame_fit": "squash"}, "input.frame_fit must be one of stretch, crop, pad or null, got 'squash'"),
        ("crop", "its 'input' section must be an object, got 'crop'"),
    ):
        (tmp_path / "config.json").write_text(json.dumps({**payload, "input": section}))
        with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'config.json'}: {problem}")):
            VideoSlotModel.from_pretrained(tmp_path, registry=registry)


def test_from_pretrained_names_the_config_and_the_component_whose_constructor_fails(
    tmp_path, registry, tiny_model: VideoSlotModel
) -> None:
    tiny_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model"]["encoder"]["kwargs"]["kernel_size"] = 4
    (tmp_path / "config.json").write_text(json.dumps(config))
    built_by = re.escape(
        "config.json: cannot build the encoder 'small_cnn' (plugins.builtin.encoders.small_cnn.SmallCNNEncoder, "
        "registered by plugin 'plugins.builtin.encoders') from config {'channels': [8, 8], 'kernel_size': 4, "
        "'out_dim': 16, 'strides': [2, 2]} and wiring {'image_size': (16, 16)}: ValueError: small_cnn: kernel_size"
    )
    with pytest.raises(RegistryError, match=built_by) as raised:
        VideoSlotModel.from_pretrained(tmp_path, registry=registry)
    assert isinstance(raised.value, ValueError)


def test_from_pretrained_names_a_config_that_is_not_utf8(tmp_path, registry, tiny_model: VideoSlotModel) -> None:
    tiny_model.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match=r"config\.json is not valid UTF-8 JSON"):
        VideoSlotModel.from_pretrained(tmp_path, registry=registry)


def test_saved_dinov2_model_loads_without_its_initial_weights_file(tmp_path, registry) -> None:
    torch.manual_seed(0)
    donor = VideoSlotModel(**model_config(encoder=DINOV2, decoder=FEATURE_DECODER), registry=registry)
    weights = tmp_path / "dinov2.safetensors"
    save_file({k: v.contiguous() for k, v in donor.encoder.backbone.state_dict().items()}, str(weights))
    encoder = {"name": "dinov2", "kwargs": {**DINOV2["kwargs"], "weights": str(weights)}}
    model = VideoSlotModel(**model_config(encoder=encoder, decoder=FEATURE_DECODER), registry=registry)
    model.save_pretrained(tmp_path / "model")
    weights.unlink()  # e.g. the model was copied to another machine

    loaded = VideoSlotModel.from_pretrained(tmp_path / "model", registry=registry)

    assert "weights" not in json.loads((tmp_path / "model" / "config.json").read_text())["model"]["encoder"]["kwargs"]
    assert model.config["encoder"]["kwargs"]["weights"] == str(weights)  # training configs keep it
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_from_pretrained_puts_the_weights_on_map_location(tmp_path, tiny_model: VideoSlotModel) -> None:
    tiny_model.save_pretrained(tmp_path)
    loaded = VideoSlotModel.from_pretrained(tmp_path, map_location="cuda")
    assert {p.device.type for p in loaded.parameters()} == {"cuda"}
    output, _ = loaded.first_step(torch.rand(1, 3, 16, 16, device="cuda"))
    assert output.slots.device.type == "cuda"


def test_save_writes_only_config_and_safetensors(tmp_path, tiny_model: VideoSlotModel) -> None:
    tiny_model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_unknown_component_config_key_is_reported(registry) -> None:
    config = model_config(aggregator={"name": "slot_attention", "kwargs": {"iterations": 3}})
    with pytest.raises(TypeError, match="iterations"):
        VideoSlotModel(**config, registry=registry)


def test_wiring_argument_in_component_config_is_reported(registry) -> None:
    config = model_config(aggregator={"name": "slot_attention", "kwargs": {"slot_dim": 8}})
    with pytest.raises(TypeError, match="set by the model"):
        VideoSlotModel(**config, registry=registry)


def test_video_must_be_five_dimensional(tiny_model: VideoSlotModel) -> None:
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        tiny_model(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="T >= 1"):
        tiny_model(torch.rand(2, 0, 3, 16, 16))


class _GrowingTransition(torch.nn.Module):
    """Adds two slots per frame: the shape bug a third-party transition can have."""

    def forward(self, past_slots, past_features):  # type: ignore[no-untyped-def]
        return torch.cat([past_slots[-1], past_slots[-1][:, :2]], dim=1)


def test_a_component_returning_the_wrong_shape_is_named_at_once(tiny_model: VideoSlotModel, video: torch.Tensor):
    """Without the check the slot count grows frame after frame and the failure comes later, elsewhere."""
    tiny_model.eval()
    with torch.no_grad():
        _, state = tiny_model.first_step(video[:, 0])
        tiny_model.transition.forward = _GrowingTransition().forward  # type: ignore[method-assign]
        wrong = r"the transition '\w+' \(.*\) returned queries of shape \(2, 5, 16\), expected \(2, 3, 16\)"
        with pytest.raises(ValueError, match=wrong):
            tiny_model.step(video[:, 1], state)


def test_component_kwargs_must_be_savable_and_paths_are_saved_as_strings(tmp_path) -> None:
    """Found when the model is built, not when a training run saves its first checkpoint."""
    from pathlib import Path

    from plugins.config import ComponentSpec

    with pytest.raises(TypeError, match=r"component 'broadcast': its kwargs are saved in config\.json"):
        ComponentSpec.parse({"name": "broadcast", "kwargs": {"channels": object()}})
    spec = ComponentSpec.parse({"name": "dinov2", "kwargs": {"weights": Path("w.safetensors")}})
    assert spec.to_json()["kwargs"] == {"weights": "w.safetensors"}


# -- contract checks on every step: a component of each kind that breaks its contract, as a plugin's could --------


class BareTensorEncoder(SmallCNNEncoder):
    name = "bare_tensor_encoder"

    def forward(self, frames):  # type: ignore[no-untyped-def]
        return super().forward(frames).features  # the tensor instead of an EncoderOutput


class OffGridEncoder(SmallCNNEncoder):
    name = "off_grid_encoder"

    def forward(self, frames):  # type: ignore[no-untyped-def]
        out = super().forward(frames)  # one token short of the feature_grid it declares
        return dataclasses.replace(out, features=out.features[:, 1:], raw=out.raw[:, 1:])


class NarrowEncoder(SmallCNNEncoder):
    name = "narrow_encoder"

    def forward(self, frames):  # type: ignore[no-untyped-def]
        out = super().forward(frames)  # one channel short of the feature_dim it declares
        return dataclasses.replace(out, features=out.features[..., 1:])


class TensorInitializer(SmoothSAPreheat):
    name = "tensor_initializer"

    def forward(self, features):  # type: ignore[no-untyped-def]
        return super().forward(features).queries  # the tensor instead of an InitializerOutput


class TupleTransition(IdentityTransition):
    name = "tuple_transition"

    def forward(self, past_slots, past_features):  # type: ignore[no-untyped-def]
        return (super().forward(past_slots, past_features),)


class LastAttentionAggregator(SlotAttention):
    name = "last_attention_aggregator"

    def forward(self, features, queries, num_iterations, slot_mask=None):  # type: ignore[no-untyped-def]
        out = super().forward(features, queries, num_iterations, slot_mask)
        return dataclasses.replace(out, attention=out.attention[:, -1:])  # not one map per iteration


class ShortReconstructionDecoder(SpatialBroadcastDecoder):
    name = "short_reconstruction_decoder"

    def forward(self, slots, target):  # type: ignore[no-untyped-def]
        out = super().forward(slots, target)
        return dataclasses.replace(out, reconstruction=out.reconstruction[:, 1:])


CONTRACT_BREAKERS = [
    ("encoder", BareTensorEncoder, r"returned Tensor, not the EncoderOutput of its contract"),
    ("encoder", OffGridEncoder, r"returned features of shape \(2, 15, 16\), expected \(2, 16, 16\) \(\[B, h\*w, "),
    ("encoder", NarrowEncoder, r"returned features of shape \(2, 16, 15\), expected \(2, 16, 16\) \(\[B, h\*w, "),
    ("initializer", TensorInitializer, r"returned Tensor, not the InitializerOutput of its contract"),
    ("transition", TupleTransition, r"returned queries of type tuple, not a tensor"),
    ("aggregator", LastAttentionAggregator, r"returned attention of shape \(2, 1, 3, 16\), expected \(2, 3, 3, 16\)"),
    ("decoder", ShortReconstructionDecoder, r"returned reconstruction of shape \(2, 255, 3\), expected \(2, 256, 3\)"),
]


@pytest.mark.parametrize(("role", "cls", "problem"), CONTRACT_BREAKERS, ids=[c.name for _, c, _ in CONTRACT_BREAKERS])
def test_every_component_output_is_checked_and_the_component_named(role: str, cls: type, problem: str) -> None:
    """A wrong type or shape from any component stops the step at once with a ContractViolation naming the
    component, its class and its plugin (not an AttributeError, a failure deep inside the next component, or
    nothing at all), and ``check_model_component`` reports the same violation to a plugin's own tests."""
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.current_plugin = "contract_breakers"
    registry.add(f"{role}s", cls)
    kwargs = TINY_MODEL[role]["kwargs"] if role in ("encoder", "decoder") else {}  # the tiny built-in's sizes
    config = model_config(**{role: {"name": cls.name, "kwargs": kwargs}})
    model = VideoSlotModel(**config, registry=registry).eval()
    where = re.escape(f"{cls.__module__}.{cls.__qualname__}, registered by plugin 'contract_breakers'")
    named = rf"the {role} '{cls.name}' \({where}\) "
    with torch.no_grad(), pytest.raises(ContractViolation, match=named + problem) as raised:
        model(torch.rand(2, 4, 3, 16, 16))
    assert isinstance(raised.value, ValueError), "callers handling a bad model as a ValueError still catch it"
    with pytest.raises(ContractViolation, match=named + problem):
        check_model_component(config, role, registry)
