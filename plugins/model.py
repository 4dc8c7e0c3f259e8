"""``VideoSlotModel``: the recurrent slot encoder composed from registered components.

Data flow per frame: frames -> encoder -> (initializer on the first frame | transition later) -> aggregator
-> decoder -> slots + masks. The recurrent primitive is explicit: :meth:`VideoSlotModel.first_step` and
:meth:`VideoSlotModel.step`; :meth:`VideoSlotModel.forward` is only a loop over them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from plugins.config import ComponentSpec, ComponentSpecLike
from plugins.contracts import check_shape, check_type, require_attributes, violation
from plugins.frame_fit import FrameFitName
from plugins.interfaces import (
    WIRING_ARGUMENTS,
    Aggregator,
    Component,
    Decoder,
    Encoder,
    Initializer,
    Transition,
)
from plugins.model_sizes import check_model_sizes
from plugins.pretrained import read_pretrained, write_pretrained
from plugins.registry import (
    ComponentKind,
    ComponentRegistry,
    configuration_arguments,
)
from plugins.types import (
    AggregatorOutput,
    DecoderOutput,
    EncoderOutput,
    Frames,
    InitializerOutput,
    SlotState,
    StepOutput,
    Tokens,
    Video,
    VideoOutput,
)

COMPONENT_NAMES = ("encoder", "initializer", "aggregator", "transition", "decoder")
"""The component attributes (and ``specs`` keys) of :class:`VideoSlotModel`, in data-flow order."""

ENCODER_WIRING = ("image_size", "num_slots", "slot_dim")
"""The wiring arguments the model passes to encoders; the other components get all of
:data:`~plugins.interfaces.WIRING_ARGUMENTS` (the rest comes from the encoder)."""


_KINDS = {
    "encoder": ComponentKind.ENCODERS,
    "initializer": ComponentKind.INITIALIZERS,
    "aggregator": ComponentKind.AGGREGATORS,
    "transition": ComponentKind.TRANSITIONS,
    "decoder": ComponentKind.DECODERS,
}


class VideoSlotModel(nn.Module):
    """A recurrent video slot model: the same code for training, serving and export.

    The constructor arguments are the configuration (:attr:`config` returns them as JSON).

    Every step checks each component's output against its contract: the type (``EncoderOutput``, a queries
    tensor, ...), the shape (encoder features ``[B, h*w, feature_dim]`` for its declared grid and width,
    queries and slots ``[B, K, D]``, attention ``[B, R, K, P]``, masks ``[B, K, h, w]``, a reconstruction of the
    target's shape) and the dtype of the encoder's features and raw tokens (the frames' dtype) and of queries and
    slots (the encoder features' dtype); dtypes are not compared while autocast is enabled, where mixed precision
    gives outputs of several dtypes. A violation raises
    :class:`~plugins.interfaces.ContractViolation` naming the component, its class and the plugin that registered
    it, instead of a failure deep inside the next component or a shape that drifts frame after frame. The checks
    compare types, shapes and dtypes only (about 8 us per step on the development CPU, the dtypes about 0.5 us of
    it per slots check, against 3.2 ms for a step of the default model); the shape comparisons are skipped while
    ONNX export traces the model, where sizes are symbolic. The input is checked the same way before the encoder
    sees it: :meth:`first_step`, :meth:`step` and :meth:`forward` raise ``ValueError`` naming the fix for input
    other than a floating-point tensor ``[B, 3, H, W]`` (``[B, T, 3, H, W]`` for a video) at :attr:`image_size`
    of the weights' dtype (``uint8`` frames, channels last, another size, float64 frames for float32 weights).

    Args:
        encoder: encoder spec (registry name + kwargs).
        initializer: first-frame query initializer spec.
        aggregator: aggregator spec (Slot Attention).
        transition: transition spec (predicts later frames' queries).
        decoder: decoder spec.
        num_slots: K.
        slot_dim: D.
        image_size: ``(H, W)`` of the frames the model takes; callers resize to it.
        first_iters: aggregator iterations on the first frame (SmoothSA: 3).
        later_iters: aggregator iterations on later frames (SmoothSA: 1).
        registry: where to look the names up; defaults to the registry of the default plugin manager.
            Not part of the configuration.

    Attributes:
        frame_fit: how frames of another aspect ratio than ``image_size`` were fitted to it in training
            (:data:`plugins.frame_fit.FRAME_FITS`), so that serving can fit them the same way; ``None`` (the
            default) when the training frames already had the input's aspect ratio or nothing recorded it.
            Not part of the architecture: training sets it, ``config.json`` keeps it in its ``input`` section.

    Raises:
        TypeError: ``num_slots``, ``slot_dim``, ``first_iters`` or ``later_iters`` is not an integer (a bool is
            not), or ``image_size`` is not two integers >= 1.
        ValueError: ``num_slots``, ``slot_dim``, ``first_iters``, ``later_iters`` or a side of ``image_size`` is
            below 1 or above its bound (:mod:`plugins.model_sizes`: 256 slots, slots of 4096, 100 iterations,
            4096 pixels).

    Example:
        >>> model = VideoSlotModel(encoder="small_cnn", initializer="smoothsa_preheat",
        ...     aggregator="slot_attention", transition="randsfq", decoder="broadcast")  # doctest: +SKIP
        >>> out, state = model.first_step(frames)  # frames [B, 3, 64, 64] in [0, 1]  # doctest: +SKIP
        >>> out, state = model.step(next_frames, state)  # doctest: +SKIP
    """

    def __init__(
        self,
        encoder: ComponentSpecLike,
        initializer: ComponentSpecLike,
        aggregator: ComponentSpecLike,
        transition: ComponentSpecLike,
        decoder: ComponentSpecLike,
        num_slots: int = 7,
        slot_dim: int = 64,
        image_size: tuple[int, int] | list[int] = (64, 64),
        first_iters: int = 3,
        later_iters: int = 1,
        registry: ComponentRegistry | None = None,
    ) -> None:
        super().__init__()
        check_model_sizes(num_slots, slot_dim, image_size, first_iters, later_iters)
        if registry is None:
            from plugins.manager import default_registry

            registry = default_registry()
        given = (encoder, initializer, aggregator, transition, decoder)
        specs = {name: ComponentSpec.parse(spec) for name, spec in zip(COMPONENT_NAMES, given, strict=True)}
        self.specs = specs
        self.num_slots = num_slots
        self.slot_dim = slot_dim
        self.image_size: tuple[int, int] = (int(image_size[0]), int(image_size[1]))
        self.first_iters = first_iters
        self.later_iters = later_iters
        self.frame_fit: FrameFitName | None = None
        self._checked_input_dtype: torch.dtype | None = None  # see _check_input

        self.component_plugins = {role: registry.owner(_KINDS[role], spec.name) for role, spec in specs.items()}
        """The plugin that registered each component, by role (named in contract violations)."""
        self.plugin_versions = {
            plugin: registry.plugin_versions[plugin]
            for plugin in sorted(set(self.component_plugins.values()))
            if plugin in registry.plugin_versions
        }
        """The version of each of those plugins where the registry knows it (``save_pretrained`` records them)."""
        self.plugin_distributions = {
            plugin: registry.plugin_distributions[plugin]
            for plugin in sorted(set(self.component_plugins.values()))
            if plugin in registry.plugin_distributions
        }
        """The distribution of each of those plugins where the registry knows it (``save_pretrained`` records
        them, so a message about a missing plugin can say what to install)."""
        # encoders get image_size, num_slots and slot_dim; the rest is derived from the encoder
        wiring: dict[str, Any] = {"image_size": self.image_size, "num_slots": num_slots, "slot_dim": slot_dim}
        self.encoder = cast(Encoder, _build(registry, ComponentKind.ENCODERS, specs["encoder"], wiring))
        require_attributes(self, "encoder", ("feature_dim", "raw_dim", "feature_grid"))
        wiring |= {"feature_dim": self.encoder.feature_dim, "feature_grid": self.encoder.feature_grid}
        decoder_cls = cast(type[Decoder], registry.get(ComponentKind.DECODERS, specs["decoder"].name))
        wiring["target_dim"] = 3 if decoder_cls.target_kind == "pixels" else self.encoder.raw_dim  # checked on add
        self.initializer = cast(
            Initializer, _build(registry, ComponentKind.INITIALIZERS, specs["initializer"], wiring)
        )
        self.aggregator = cast(Aggregator, _build(registry, ComponentKind.AGGREGATORS, specs["aggregator"], wiring))
        self.transition = cast(Transition, _build(registry, ComponentKind.TRANSITIONS, specs["transition"], wiring))
        self.decoder = cast(Decoder, _build(registry, ComponentKind.DECODERS, specs["decoder"], wiring))
        require_attributes(self, "decoder", ("target_grid",))

    # -- configuration ------------------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments as JSON (``VideoSlotModel(**model.config)`` rebuilds the architecture).

        Each component's ``kwargs`` hold every argument of its constructor, the defaults it was built with
        included (:func:`~plugins.registry.configuration_arguments`), so that a rebuild does not change when a
        plugin changes a default; left out are the wiring arguments the model supplies and a default that is no
        JSON value (a rebuild takes that one from the constructor).
        """
        return {
            **{role: self._component_config(role) for role in COMPONENT_NAMES},
            "num_slots": self.num_slots,
            "slot_dim": self.slot_dim,
            "image_size": list(self.image_size),
            "first_iters": self.first_iters,
            "later_iters": self.later_iters,
        }

    def _component_config(self, role: str) -> dict[str, Any]:
        """``{"name": ..., "kwargs": ...}`` of the component in ``role``, its defaults filled in."""
        spec = self.specs[role].to_json()
        supplied = ENCODER_WIRING if role == "encoder" else tuple(WIRING_ARGUMENTS)
        kwargs = configuration_arguments(type(getattr(self, role)), spec["kwargs"], supplied)
        return {"name": spec["name"], "kwargs": kwargs}

    @property
    def saved_config(self) -> dict[str, Any]:
        """:attr:`config` without the components' :attr:`~plugins.interfaces.Component.initial_weight_arguments`.

        This is what ``config.json`` holds: the saved weights replace whatever those arguments would load.
        """
        config = self.config
        for kind in COMPONENT_NAMES:
            component = cast(Component, getattr(self, kind))
            kwargs = config[kind]["kwargs"]
            config[kind]["kwargs"] = {
                key: value for key, value in kwargs.items() if key not in component.initial_weight_arguments
            }
        return config

    @property
    def mask_grid(self) -> tuple[int, int]:
        """``(h, w)`` of the masks in :class:`~plugins.types.StepOutput`."""
        return self.decoder.target_grid

    def set_training_progress(self, progress: float) -> None:
        """Tell every component how far training is (``[0, 1]``), for their schedules."""
        for component in self.modules():
            if isinstance(component, Component):
                component.on_training_progress(progress)

    # -- the recurrent primitive --------------------------------------------------------------------------

    def first_step(self, frames: Frames) -> tuple[StepOutput, SlotState]:
        """Process the first frame of a video: initializer + ``first_iters`` aggregator iterations.

        Args:
            frames: ``[B, 3, H, W]`` in ``[0, 1]`` at :attr:`image_size`, of the weights' dtype.

        Returns:
            The frame's outputs and the state to pass to :meth:`step` with the next frame.

        Raises:
            ValueError: ``frames`` is no floating-point tensor ``[B, 3, H, W]`` at :attr:`image_size` of the
                weights' dtype (the message names the fix, see :meth:`_check_input`).
        """
        self._check_input(frames)
        encoded = self._encode(frames)
        initial = self.initializer(encoded.features)
        check_type(self, "initializer", initial, InitializerOutput)
        self._check_slots("initializer", "queries", initial.queries, encoded)
        if initial.preheated is not None:
            self._check_slots("initializer", "preheated queries", initial.preheated, encoded)
        return self._group_and_decode(frames, encoded, initial.queries, self.first_iters, initial.preheated, None)

    def step(self, frames: Frames, state: SlotState) -> tuple[StepOutput, SlotState]:
        """Process a later frame: transition from the state + ``later_iters`` aggregator iterations.

        Args:
            frames: ``[B, 3, H, W]`` in ``[0, 1]`` at :attr:`image_size`, of the weights' dtype.
            state: the state returned for the previous frame (``SlotState(slots=previous_slots)`` at inference).

        Returns:
            The frame's outputs and the state for the next frame.

        Raises:
            ValueError: as :meth:`first_step`, or ``state`` holds another number of rows than ``frames``.
        """
        self._check_input(frames)
        if not torch.jit.is_tracing() and state.slots.shape[0] != frames.shape[0]:  # type: ignore[attr-defined,no-untyped-call]
            raise ValueError(
                f"step got a batch of {frames.shape[0]} frames and a state of {state.slots.shape[0]} rows: each "
                "row of the state is the video of the frame in the same row (a batch of one would be broadcast "
                "against the other's rows, mixing videos)"
            )
        encoded = self._encode(frames)
        past_slots = state.past_slots or (state.slots,)
        past_features = (*state.past_features, encoded.features)[-len(past_slots) :]
        queries = self.transition(past_slots, past_features)
        self._check_slots("transition", "queries", queries, encoded)
        return self._group_and_decode(frames, encoded, queries, self.later_iters, None, state)

    def forward(self, video: Video, state: SlotState | None = None) -> VideoOutput:
        """Run a clip frame by frame: a loop over :meth:`first_step` / :meth:`step`.

        Args:
            video: ``[B, T, 3, H, W]`` in ``[0, 1]`` at :attr:`image_size`, of the weights' dtype.
            state: continue from an earlier chunk of the same videos instead of starting fresh.

        Raises:
            ValueError: ``video`` has no frames or is no floating-point tensor ``[B, T, 3, H, W]`` at
                :attr:`image_size` of the weights' dtype (the message names the fix, see :meth:`_check_input`).
        """
        self._check_input(video, video=True)
        if video.shape[1] == 0:
            raise ValueError(f"expected a video [B, T, 3, H, W] with T >= 1; got shape {tuple(video.shape)}")
        steps: list[StepOutput] = []
        for t in range(video.shape[1]):
            out, state = self.first_step(video[:, t]) if state is None else self.step(video[:, t], state)
            steps.append(out)
        assert state is not None
        return VideoOutput(
            slots=torch.stack([s.slots for s in steps], dim=1),  # T x [B, K, D] -> [B, T, K, D]
            masks=torch.stack([s.masks for s in steps], dim=1),  # T x [B, K, h, w] -> [B, T, K, h, w]
            reconstruction=torch.stack([s.reconstruction for s in steps], dim=1),  # T x [B, Pt, Ct] -> [B, T, Pt, Ct]
            target=torch.stack([s.target for s in steps], dim=1),  # T x [B, Pt, Ct] -> [B, T, Pt, Ct]
            steps=steps,
            state=state,
        )

    def _check_input(self, frames: Frames, video: bool = False) -> None:
        """Refuse input the model cannot run, with a message naming the fix, instead of a failure inside a
        component (``uint8`` frames break the encoder's contract, other sizes fail on a shape deep inside, a
        channels-last layout or another dtype fail in the first layer with torch's message).

        ``frames`` must be a floating-point tensor ``[B, 3, H, W]`` (``[B, T, 3, H, W]`` for a ``video``) with
        ``(H, W)`` the model's :attr:`image_size` and the dtype of its weights. The check is a few comparisons of
        type, dtype and shape, never of values (which would wait for the device), so values outside ``[0, 1]``
        pass. The weights' dtype is looked up only when the frames' dtype differs from the last one that matched
        it, and not compared under autocast (mixed precision runs weights of one dtype on inputs of another). The
        shape is not compared while ONNX export traces the model (sizes are tensors there; the exporter feeds
        frames of the right shape).

        Raises:
            ValueError: naming what is wrong and how to fix it.
        """
        what, layout = ("video", "[B, T, 3, H, W]") if video else ("frames", "[B, 3, H, W]")
        if not isinstance(frames, torch.Tensor):
            raise ValueError(
                f"the model takes {what} as a torch.Tensor {layout}, got {type(frames).__module__}."
                f"{type(frames).__name__} (a numpy array converts with torch.from_numpy(array))"
            )
        if not frames.is_floating_point():
            raise ValueError(
                f"the model takes floating-point {what} in [0, 1], got {frames.dtype}: convert with "
                f"{what}.float() / 255"
            )
        if frames.dtype != self._checked_input_dtype:
            weights = next(self.parameters(), frames).dtype  # a model without weights takes any dtype
            if frames.dtype != weights and not torch.is_autocast_enabled(frames.device.type):
                raise ValueError(
                    f"the model's weights are {weights}, got {what} of {frames.dtype}: convert with "
                    f"{what}.to({weights}) (or the model with model.to({frames.dtype}))"
                )
            if frames.dtype == weights:
                self._checked_input_dtype = frames.dtype
        if torch.jit.is_tracing():  # type: ignore[attr-defined,no-untyped-call]
            return
        channels = 2 if video else 1  # the axis of the 3 colour channels
        if frames.ndim != channels + 3 or frames.shape[channels] != 3:
            hint = _layout_hint(tuple(frames.shape), video)
            raise ValueError(f"the model takes {what} laid out {layout}, got shape {tuple(frames.shape)}{hint}")
        if tuple(frames.shape[-2:]) != self.image_size:
            height, width = self.image_size
            raise ValueError(
                f"the model takes {what} at image_size {height}x{width} (H x W), got {frames.shape[-2]}x"
                f"{frames.shape[-1]}: resize to image_size first (a batch [B, 3, H, W]: torch.nn.functional."
                'interpolate(frames, size=model.image_size, mode="bilinear", antialias=True))'
            )

    def _group_and_decode(
        self,
        frames: Frames,
        encoded: EncoderOutput,
        queries: torch.Tensor,
        num_iterations: int,
        preheated: torch.Tensor | None,
        previous: SlotState | None,
    ) -> tuple[StepOutput, SlotState]:
        batch = frames.shape[0]
        grouped = self.aggregator(encoded.features, queries, num_iterations)
        check_type(self, "aggregator", grouped, AggregatorOutput)
        self._check_slots("aggregator", "slots", grouped.slots, encoded)
        attention = (batch, num_iterations, self.num_slots, encoded.features.shape[1])
        check_shape(self, "aggregator", "attention", grouped.attention, attention, "[B, R, K, P]")
        target = self._target(frames, encoded)
        decoded = self.decoder(grouped.slots, target)
        check_type(self, "decoder", decoded, DecoderOutput)
        check_shape(self, "decoder", "masks", decoded.masks, (batch, self.num_slots, *self.mask_grid), "[B, K, h, w]")
        check_shape(self, "decoder", "reconstruction", decoded.reconstruction, tuple(target.shape), "the target's")
        if decoded.extra is not None:
            check_shape(self, "decoder", "extra", decoded.extra, (*target.shape[:2], None), "[B, Pt, E]")
        out = StepOutput(
            slots=grouped.slots,
            masks=decoded.masks,
            attention=grouped.attention,
            reconstruction=decoded.reconstruction,
            target=target,
            features=encoded.features,
            grid=encoded.grid,
            preheated=preheated,
            extra=decoded.extra,
        )
        return out, self._next_state(grouped.slots, encoded.features, previous)

    def _encode(self, frames: Frames) -> EncoderOutput:
        """Run the encoder and check its output against its own declared ``feature_grid``, ``feature_dim`` and
        ``raw_dim``, which the other components were built for, and against the frames' dtype (the other components'
        weights have it; another dtype would fail inside the next one naming none). Under autocast the dtypes are
        not compared (see :func:`~plugins.contracts.check_shape`)."""
        encoded: EncoderOutput = self.encoder(frames)
        check_type(self, "encoder", encoded, EncoderOutput)
        encoder, batch = self.encoder, frames.shape[0]
        height, width = encoder.feature_grid
        dtype = (frames.dtype, "the frames")
        features = (batch, height * width, encoder.feature_dim)
        check_shape(
            self, "encoder", "features", encoded.features, features, "[B, h*w, feature_dim] it declares", dtype
        )
        raw = (batch, height * width, encoder.raw_dim)
        check_shape(self, "encoder", "raw", encoded.raw, raw, "[B, h*w, raw_dim] it declares", dtype)
        if not (isinstance(encoded.grid, tuple | list) and tuple(encoded.grid) == (height, width)):
            violation(self, "encoder", f"returned grid {encoded.grid!r}, but its feature_grid is {(height, width)}")
        return encoded

    def _check_slots(self, role: str, what: str, tensor: torch.Tensor, encoded: EncoderOutput) -> None:
        """Slots or queries ``[B, K, D]`` of the features' batch size and dtype (the aggregator mixes them with the
        features, so another dtype fails there; not compared under autocast, see :func:`check_shape`)."""
        features = encoded.features  # [B, h*w, feature_dim], checked by _encode
        shape = (features.shape[0], self.num_slots, self.slot_dim)
        check_shape(self, role, what, tensor, shape, "[B, K, D]", (features.dtype, "the encoder's features"))

    def _target(self, frames: Frames, encoded: EncoderOutput) -> Tokens:
        if self.decoder.target_kind == "features":
            return encoded.raw.detach()
        height, width = self.decoder.target_grid
        if (height, width) != tuple(frames.shape[-2:]):
            frames = F.interpolate(frames, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        return frames.detach().flatten(2).transpose(1, 2)  # [B, 3, h, w] -> [B, h*w, 3]

    def _next_state(self, slots: torch.Tensor, features: torch.Tensor, previous: SlotState | None) -> SlotState:
        keep = self.transition.window - 1
        if not self.training or keep < 1:
            return SlotState(slots=slots)
        past_slots = (*(previous.past_slots if previous else ()), slots)[-keep:]
        past_features = (*(previous.past_features if previous else ()), features)[-keep:]
        return SlotState(slots=slots, past_slots=past_slots, past_features=past_features)

    # -- persistence -------------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if needed).

        ``config.json`` holds the architecture (``model``: :attr:`saved_config`, each component's arguments with
        their defaults filled in, so a plugin that later changes a default does not change the reloaded model), the
        plugin of each component (``plugins``: role -> plugin name), the version of each of those plugins where
        known (``plugin_versions``: plugin name -> the version of its distribution, the project's own for the
        built-ins; :meth:`from_pretrained` warns when an external one differs), the distribution of each
        (``plugin_distributions``: plugin name -> what to ``pip install``) and, when :attr:`frame_fit` is set,
        ``input``: ``{"frame_fit": ...}``. ``plugins``, ``plugin_versions`` and ``plugin_distributions`` are
        informational: a file without them (saved by an earlier version) loads the same.

        Each file is written to a temporary name, flushed to disk and renamed (``plugins.files``), so an
        interrupted save never leaves a half-written file under the final name; the files get the permissions a
        plain ``open`` gives under the process umask.
        """
        return write_pretrained(self, directory)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike[str],
        registry: ComponentRegistry | None = None,
        map_location: str | torch.device = "cpu",
    ) -> VideoSlotModel:
        """Load a model written by :meth:`save_pretrained`, in eval mode, on ``map_location``.

        Warns:
            PluginVersionWarning: a component's plugin is installed in another version than ``config.json``
                records (once per plugin; the message names the plugin, both versions and the file). The recorded
                arguments are used, but the plugin's code may compute differently. Files without recorded
                versions load without it. Warned once the model has loaded (a failed load names the change in its
                error instead).

        Raises:
            FileNotFoundError: the directory or a file in it is missing (the message names it; for a training run
                folder, it names the run's models to pass instead, see :func:`~plugins.model_files.run_folder_hint`).
            ValueError: the config is unreadable, nested more than :data:`~plugins.model_files.MAX_JSON_NESTING`
                levels deep or from an unknown format version, gives a component an initial-weights argument
                (which ``save_pretrained`` never writes: a path the file could point anywhere), or the weights file
                is damaged or does not fit the config (tensors of other shapes: one line, see
                :func:`~plugins.model_files.weights_mismatch_message`).
            RegistryError: the config names a component that no loaded plugin registers (the message names the
                file and, for models saved with the plugin names, the plugin each component came from);
                :class:`ComponentBuildError`, a subclass, when a component's constructor fails.

            A ``ComponentConfigError`` or ``ComponentBuildError`` (a component that cannot be built), or a
            ``ValueError`` for weights that do not fit, starts with the plugin changes since the file was saved
            (another version, another plugin registering the name, and the ``pip install`` command that goes
            back), when there are any.
        """
        return read_pretrained(cls, directory, registry, map_location)


def _layout_hint(shape: tuple[int, ...], video: bool) -> str:
    """How to reach ``[B, 3, H, W]`` (``[B, T, 3, H, W]`` for a ``video``) from input of ``shape``, for the common
    mistakes; empty when none fits."""
    if video:
        if len(shape) == 5 and shape[-1] == 3:
            return ": channels-last [B, T, H, W, 3] becomes [B, T, 3, H, W] with video.permute(0, 1, 4, 2, 3)"
        if len(shape) == 4 and shape[1] == 3:
            return ": frames [B, 3, H, W] of one time step go to model.first_step, or take a time axis, video[:, None]"
        return ""
    if len(shape) == 4 and shape[-1] == 3:
        return ": channels-last [B, H, W, 3] becomes [B, 3, H, W] with frames.permute(0, 3, 1, 2)"
    if len(shape) == 3 and shape[0] == 3:
        return ": one frame [3, H, W] needs the batch axis, frames.unsqueeze(0)"
    if len(shape) == 3 and shape[-1] == 3:
        return ": one channels-last frame [H, W, 3] becomes a batch with frames.permute(2, 0, 1).unsqueeze(0)"
    if len(shape) == 5 and shape[2] == 3:
        return ": for a video [B, T, 3, H, W] call the model (model(video)), or pass one time step, video[:, t]"
    return ""


def _build(registry: ComponentRegistry, kind: ComponentKind, spec: ComponentSpec, wiring: dict[str, Any]) -> Component:
    return registry.build(kind, spec.name, spec.kwargs, wiring)
