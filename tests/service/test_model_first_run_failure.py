"""A model whose component's code fails at inference is refused when it loads, naming the component, its plugin and
the line that raised: the server's start-up error is one line, which would otherwise carry torch's message alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from installed_plugins import installed_transition
from service_helpers import SERVICE_TINY_MODEL

import plugins.manager
from plugins import Transition, VideoSlotModel
from plugins.builtin.decoders.broadcast import SpatialBroadcastDecoder
from plugins.types import Features, Slots
from service.__main__ import main
from service.backends.torch_backend import ModelRunError
from service.engine import load_engine


class _Projecting(Transition):
    """A transition that projects the previous slots; the subclasses add their bugs to ``forward``."""

    def __init__(self, slot_dim: int) -> None:
        super().__init__()
        self.projection = torch.nn.Linear(slot_dim, slot_dim)


class EvalShapeBug(_Projecting):
    """A transition that trains, but adds a channel to the slots in eval mode (a plugin's bug)."""

    name = "eval_shape_bug"

    def forward(self, past_slots: tuple[Slots, ...], past_features: tuple[Features, ...]) -> Slots:
        """Project the previous slots (with one channel too many at inference)."""
        del past_features  # Unused.
        slots = past_slots[-1]
        if not self.training:
            slots = torch.cat([slots, slots[..., :1]], dim=-1)
        return self.projection(slots)


class SameModuleDecoder(SpatialBroadcastDecoder):
    """A decoder defined in the transition's module, as a small plugin keeps all its components in one: the message
    must still blame the transition."""

    name = "same_module_broadcast"


BUG_LINE = EvalShapeBug.forward.__code__.co_firstlineno + 6
"""The line of ``EvalShapeBug.forward`` that raises: its ``return``."""


@pytest.fixture
def buggy_model(tmp_path, monkeypatch) -> str:
    registry = installed_transition(tmp_path, monkeypatch, "buggy", "1.0", EvalShapeBug)
    registry.add_decoder(SameModuleDecoder)
    monkeypatch.setattr(plugins.manager, "_default_registry", registry)  # what the server loads with
    decoder = {**SERVICE_TINY_MODEL["decoder"], "name": "same_module_broadcast"}
    config = {**SERVICE_TINY_MODEL, "transition": "eval_shape_bug", "decoder": decoder}
    model = VideoSlotModel(**config, registry=registry)
    model.save_pretrained(tmp_path / "model")
    return str(tmp_path / "model")


def test_the_first_run_names_the_component_its_plugin_and_the_line(buggy_model):
    with pytest.raises(ModelRunError) as refused:
        load_engine("torch", buggy_model, name="buggy", device="cpu", max_batch_size=1)
    message = str(refused.value)
    assert message.startswith(f"{buggy_model}: the model failed on its first run (first_step, then step, ")
    assert (
        f"in the transition 'eval_shape_bug' ({__name__}.EvalShapeBug, registered by plugin 'buggy') at "
        f"{__file__}:{BUG_LINE}: RuntimeError: mat1 and mat2 shapes cannot be multiplied" in message
    )


def test_the_server_says_it_could_not_load_the_model_and_where_it_failed(buggy_model, capsys):
    assert main(["--model-dir", buggy_model, "--listen", "127.0.0.1:0", "--no-warmup"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"slotstream: cannot load the model: {buggy_model}: the model failed on its first run")
    assert f"{__file__}:{BUG_LINE}" in err


class LibraryBug(_Projecting):
    """A transition whose eval-mode call into numpy fails inside numpy."""

    name = "library_bug"

    def forward(self, past_slots: tuple[Slots, ...], past_features: tuple[Features, ...]) -> Slots:
        """Project the previous slots (after a numpy call that fails at inference)."""
        del past_features  # Unused.
        if not self.training:
            np.stack([np.zeros(2), np.zeros(3)])
        return self.projection(past_slots[-1])


def test_a_failure_inside_a_library_is_placed_at_the_components_line(tmp_path, monkeypatch):
    """The place is the plugin's own line that called the library, not the library's file."""
    registry = installed_transition(tmp_path, monkeypatch, "libbug", "1.0", LibraryBug)
    monkeypatch.setattr(plugins.manager, "_default_registry", registry)
    VideoSlotModel(**{**SERVICE_TINY_MODEL, "transition": "library_bug"}, registry=registry).save_pretrained(
        tmp_path / "model"
    )
    with pytest.raises(ModelRunError) as refused:
        load_engine("torch", tmp_path / "model", name="libbug", device="cpu", max_batch_size=1)
    line = LibraryBug.forward.__code__.co_firstlineno + 4
    component = f"the transition 'library_bug' ({__name__}.LibraryBug, registered by plugin 'libbug')"
    assert f"in {component} at {__file__}:{line}: ValueError" in str(refused.value)
