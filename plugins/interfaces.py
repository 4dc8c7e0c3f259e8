"""Abstract base classes: the contract every component plugin implements.

Each component is a ``torch.nn.Module`` whose class carries its registry ``name`` (snake_case) and whose
constructor signature is its configuration: arguments are keyword, typed, defaulted and JSON-serialisable.

Some constructor arguments are *wiring*: values that depend on the other components of a model (the slot
width, the feature width, ...). :class:`~plugins.model.VideoSlotModel` supplies them, so configs never repeat
them. A component declares the wiring it needs simply by naming the argument in its signature; the names are
listed in :data:`WIRING_ARGUMENTS`. Which kind receives which: encoders get ``image_size``, ``num_slots`` and
``slot_dim`` (the rest is derived from the encoder, so an encoder may take its own ``feature_dim``,
``feature_grid`` or ``target_dim`` as configuration); initializers, aggregators, transitions and decoders get
all six; losses and heads get none. A config may not set an argument the model supplies to that kind. The model
passes every argument by keyword, so none may be positional-only.

:class:`~plugins.model.VideoSlotModel` checks every component's output on every frame (its type and shape, and
the dtype of queries and slots: a few comparisons) and raises :class:`ContractViolation` naming the component that
broke its contract.

State semantics (one choice, used everywhere): the state carried between frames is the *previous frame's
slots*, and the transition runs at the start of the next frame, once that frame's features are known
(RandSF.Q's transition reads the current frame's features). It is the only state: components keep none of their
own between calls, and each batch element is computed from its own inputs (see :class:`Component`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

from torch import nn

from plugins.types import (
    AggregatorOutput,
    DecoderOutput,
    EncoderOutput,
    Features,
    Frames,
    Grid,
    InitializerOutput,
    Slots,
    Tensor,
    Tokens,
    VideoOutput,
)

WIRING_ARGUMENTS: dict[str, str] = {
    "image_size": "(H, W) of the frames the model takes",
    "num_slots": "K, the number of slots",
    "slot_dim": "D, the slot width",
    "feature_dim": "Df, the width of the encoder tokens (from the encoder)",
    "feature_grid": "(h, w) of the encoder tokens (from the encoder)",
    "target_dim": "Ct, the channel count of the reconstruction target (3 for pixels, the raw width otherwise)",
}
"""Constructor arguments the model fills in; a component opts in by naming one in its signature. Encoders
receive only ``image_size``, ``num_slots`` and ``slot_dim``; the other model components receive all of them."""


class ContractViolation(AssertionError, ValueError):
    """A component broke the contract of its kind; the message says which rule and by how much.

    Raised by :class:`~plugins.model.VideoSlotModel` when a component's output has the wrong type, shape or dtype
    (the message names the component, its class and the plugin that registered it), and by the checks of
    :mod:`plugins.testing`. An ``AssertionError`` for tests, and a ``ValueError`` for callers that handle a bad
    model as one.
    """


class Component(nn.Module, ABC):
    """Base of every registered component.

    Export traces the model components (``python -m training.export``): the ONNX graph keeps the tensor
    operations of one example run, so Python branches and loop counts in ``forward`` may depend on shapes and
    configuration only, never on tensor values (``if x.std() > t:`` or ``.item()`` would be frozen at the
    example's outcome; use ``torch.where`` or masks). The export refuses such code, naming the component and the
    line; :func:`plugins.testing.check_exportable` runs that check in a plugin's own tests.

    The server runs one model for every stream and batches the frames of independent streams together, so the
    ``forward`` of a model's component (encoder, initializer, aggregator, transition, decoder) must depend on its
    arguments and its weights alone: it keeps nothing from one call to the next in module attributes (no hidden
    state in ``self.h``: what a transition carries between frames is the slots the model passes in), and it
    computes each batch element from that element's inputs only (no mean, norm or attention over the batch axis;
    batch norm uses its running statistics in eval mode). :func:`plugins.testing.check_model_component` checks both
    (:func:`~plugins.testing.check_no_state_between_calls`, :func:`~plugins.testing.check_batch_independence`).

    Attributes:
        name: registry name, snake_case, unique within its kind.
    """

    name: ClassVar[str]
    initial_weight_arguments: ClassVar[frozenset[str]] = frozenset()
    """Constructor arguments that only choose where the initial weights come from (e.g. a local weights
    file). The trained weights are in ``model.safetensors``, so ``save_pretrained`` leaves these out of
    ``config.json`` and a saved model loads on a machine without the original file."""

    def on_training_progress(self, progress: float) -> None:
        """Called by the training loop before each step with the fraction of training done, in ``[0, 1]``.

        Components with schedules (e.g. the SmoothSA preheater's detach schedule) override this and keep
        the scheduled value in a buffer, so it is saved with the weights and a resumed run continues exactly.
        """


class Encoder(Component):
    """Frames to tokens.

    Contract: ``forward(frames [B, 3, H, W] in [0, 1]) -> EncoderOutput`` with ``features [B, P, Df]``,
    where ``P = h * w`` of :attr:`feature_grid`. The encoder does its own normalisation, so the frame
    format is identical for every encoder (and for exported graphs). After construction it exposes
    :attr:`feature_dim`, :attr:`feature_grid` and :attr:`raw_dim`, which the model wires into the other
    components.
    """

    feature_dim: int
    raw_dim: int
    feature_grid: Grid

    @abstractmethod
    def forward(self, frames: Frames) -> EncoderOutput:
        """Encode one frame per batch element."""


class Initializer(Component):
    """Queries for the first frame of a video.

    Contract: ``forward(features [B, P, Df]) -> InitializerOutput`` with ``queries [B, K, D]``. Initializers
    that ignore the features (plain Gaussians) still take them, for the batch size and device.
    """

    @abstractmethod
    def forward(self, features: Features) -> InitializerOutput:
        """Produce first-frame queries."""


class Aggregator(Component):
    """Groups features into slots, starting from queries.

    Contract: ``forward(features [B, P, Df], queries [B, K, D], num_iterations, slot_mask [B, K] | None)
    -> AggregatorOutput`` with the attention of every iteration. ``num_iterations`` is chosen per call by
    the model (SmoothSA runs 3 on the first frame and 1 on later frames).
    """

    @abstractmethod
    def forward(
        self, features: Features, queries: Slots, num_iterations: int, slot_mask: Tensor | None = None
    ) -> AggregatorOutput:
        """Run ``num_iterations`` rounds of competitive attention."""


class Transition(Component):
    """Predicts the next frame's queries from earlier slots and features.

    Contract: ``forward(past_slots, past_features) -> queries [B, K, D]``. ``past_slots`` are earlier
    frames' slots, oldest first, the previous frame last (each ``[B, K, D]``); ``past_features`` are encoder
    tokens of the same number of frames, oldest first, **the current frame last** (each ``[B, P, Df]``), so
    ``past_slots[-1 - j]`` lies ``j + 1`` frames back and ``past_features[-1 - j]`` lies ``j`` frames back. At
    inference the model passes exactly one of each; during training up to ``max(1, window - 1)`` of each (one
    with ``window`` 1 or 2).

    Attributes:
        window: the span of frames the transition may look at during training, the frame being predicted
            included (1 = only the previous slots and the current features; RandSF.Q uses the clip length).
    """

    window: int = 1

    @abstractmethod
    def forward(self, past_slots: tuple[Slots, ...], past_features: tuple[Features, ...]) -> Slots:
        """Predict queries for the current frame."""


class Decoder(Component):
    """Reconstructs a target from slots and says which slot explains which part.

    Contract: ``forward(slots [B, K, D], target [B, Pt, Ct]) -> DecoderOutput`` with masks over
    :attr:`target_grid` that sum to 1 over slots. The target is passed because some decoders read it
    (the random-order autoregressive decoder is conditioned on a masked copy of it); others ignore it.

    Attributes:
        target_kind: ``"pixels"`` (the frame itself, resized to ``target_grid``, in ``[0, 1]``) or
            ``"features"`` (the encoder's raw backbone tokens). Required, with no default: registration refuses a
            decoder class that does not set it.
        mask_kind: What the masks are, for evaluation reports, which state the mask source because published
            scores differ by it (e.g. ``"alpha masks (softmax over slots)"``); plain ``"masks"`` by default.
    """

    target_kind: ClassVar[Literal["pixels", "features"]]
    mask_kind: ClassVar[str] = "masks"
    target_grid: Grid

    @abstractmethod
    def forward(self, slots: Slots, target: Tokens) -> DecoderOutput:
        """Decode slots into a reconstruction and masks."""


class Loss(Component):
    """A training objective on a clip's outputs.

    Contract: ``forward(output: VideoOutput, progress) -> scalar tensor``, unweighted (the training config
    attaches the weight). ``progress`` is the fraction of training done, for losses with their own ramps.
    """

    @abstractmethod
    def forward(self, output: VideoOutput, progress: float) -> Tensor:
        """Compute the loss value."""


class Head(Component):
    """A downstream model that reads slot trajectories (dynamics, question answering, property probes).

    Contract: ``forward(slots [B, T, K, D], *inputs) -> Tensor``; what the output means is documented by each
    head. A head that reads more than the slots (a question's words, say) takes them as further arguments with
    defaults, and gives plausible ones for a batch of slots from :meth:`example_inputs` (what the component checks
    call it with).
    """

    @abstractmethod
    def forward(self, slots: Tensor) -> Tensor:
        """Run the head on slot trajectories (a head that reads further inputs adds them as defaulted arguments)."""

    def example_inputs(self, slots: Tensor) -> tuple[Tensor, ...]:
        """The further inputs of :meth:`forward` for ``slots``, for checks: none unless the head reads some."""
        return ()


__all__ = [
    "WIRING_ARGUMENTS",
    "Aggregator",
    "Component",
    "ContractViolation",
    "Decoder",
    "Encoder",
    "Head",
    "Initializer",
    "Loss",
    "Transition",
]
