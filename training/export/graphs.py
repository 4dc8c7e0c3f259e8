"""Trace the two recurrent steps of a :class:`~plugins.VideoSlotModel` into ONNX graphs.

The model is traced (the TorchScript-based ``torch.onnx`` exporter), so every Python-level loop runs with a
concrete count and is unrolled: ``first_step`` holds ``first_iters`` Slot Attention iterations and ``step``
``later_iters``, with no ``Loop``/``If``/``Scan`` nodes. The batch axis is dynamic. After tracing, the graph is
constant-folded (:func:`optimize`), which also removes the shape-check ``If`` nodes the tracer emits for
``squeeze`` on a dynamic shape, and every ``Reshape`` gets a constant target shape
(:mod:`training.export.static_shapes`), so ONNX Runtime does not recompute sizes on every call. The ``step``
graph fails when ``frames`` and ``prev_slots`` have different batch sizes (:mod:`training.export.batch_check`)
instead of broadcasting one against the other.

Tracing keeps only what the example run did: a tensor turned into a Python value (an ``if`` on it, a loop count
from ``.item()``) would become a constant of the graph. The tracer's warnings about such places are recorded
and fail the export (:mod:`training.export.tracing`), except at the places its allow-list documents; so does an
operator the exporter cannot convert, with the component that called it named.

Why not the dynamo exporter: the SmoothSA preheater branches on the value of a buffer
(``bool(detach_features)``), which ``torch.export`` rejects as data-dependent control flow; tracing takes the
branch the eval model takes, which is the only one inference uses.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from plugins import SlotState, VideoSlotModel
from service.backends.manifest import (
    BATCH_AXIS,
    FIRST_STEP,
    GRAPH_INPUTS,
    OUTPUT_MASKS,
    OUTPUT_SLOTS,
    STEP,
)
from training.export.batch_check import same_batch
from training.export.static_shapes import freeze_reshape_shapes
from training.export.tracing import FrozenValueError, recording_frozen_values, unsupported_operator

if TYPE_CHECKING:
    import onnx

#: Opsets the exporter accepts: LayerNormalization needs 17; the TorchScript exporter stops at 20.
SUPPORTED_OPSETS = range(17, 21)
DEFAULT_OPSET = 17
#: Batch size of the example inputs (>= 2, so no exporter mistakes the batch axis for a constant 1).
EXAMPLE_BATCH = 2


class FirstStepGraph(nn.Module):
    """``frames [B, 3, H, W] -> (slots [B, K, D], masks [B, K, h, w])``: the model's first frame."""

    def __init__(self, model: VideoSlotModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run :meth:`VideoSlotModel.first_step` and keep what the service returns."""
        out, _ = self.model.first_step(frames)
        return out.slots, out.masks


class StepGraph(nn.Module):
    """``(frames [B, 3, H, W], prev_slots [B, K, D]) -> (slots, masks)``: a later frame of the model; the two inputs
    must have the same batch size ``B``."""

    def __init__(self, model: VideoSlotModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor, prev_slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run :meth:`VideoSlotModel.step` from the previous frame's slots (the inference state), which must have
        the frames' batch size (:func:`~training.export.batch_check.same_batch`: the graph fails otherwise, instead
        of broadcasting a batch of one against the other input's rows).

        Raises:
            ValueError: run eagerly, ``frames`` and ``prev_slots`` have different batch sizes.
        """
        model = self.model
        slots = same_batch(prev_slots, frames, model.num_slots, model.slot_dim)
        out, _ = model.step(frames, SlotState(slots=slots))
        return out.slots, out.masks


def input_names(which: str) -> list[str]:
    """Input names of the ``first_step`` or ``step`` graph, in order."""
    return list(GRAPH_INPUTS[which])


def export_graph(model: VideoSlotModel, which: str, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Export one step of ``model`` as an optimised, checked ONNX graph.

    The model's train/eval mode is restored afterwards; the export itself always runs in eval mode.

    Args:
        model: the model.
        which: ``"first_step"`` or ``"step"``.
        opset: ONNX opset (see :data:`SUPPORTED_OPSETS`).

    Returns:
        The graph, which passed ``onnx.checker`` with full shape checks.

    Raises:
        ValueError: unknown ``which`` or unsupported ``opset``.
        FrozenValueError: tracing turned a tensor value into a Python constant outside the documented harmless
            places (an ``ExportError``; the message names the component and the line).
        UnsupportedOperatorError: an operator has no ONNX conversion at ``opset``, or its conversion refuses this
            use of it (an ``ExportError`` naming the operator and the component that called it).
    """
    import onnx

    if which not in (FIRST_STEP, STEP):
        raise ValueError(f"which must be {FIRST_STEP!r} or {STEP!r}, got {which!r}")
    if opset not in SUPPORTED_OPSETS:
        raise ValueError(f"opset must be in {SUPPORTED_OPSETS.start}-{SUPPORTED_OPSETS.stop - 1}, got {opset}")
    module: nn.Module = FirstStepGraph(model) if which == FIRST_STEP else StepGraph(model)
    examples = example_inputs(model, which)
    names = input_names(which)
    outputs = [OUTPUT_SLOTS, OUTPUT_MASKS]
    was_training = model.training
    with tempfile.TemporaryDirectory(prefix="slotstream-export-") as scratch:
        path = Path(scratch) / f"{which}.onnx"
        try:
            module.eval()
            with recording_frozen_values(model) as frozen:
                _trace(module, examples, path, opset, names, outputs)
        except (torch.onnx.errors.UnsupportedOperatorError, torch.onnx.errors.SymbolicValueError) as error:
            with _mha_fastpath_off():  # traced again (in eval mode still) to find who called the operator
                located = unsupported_operator(error, module, examples, model, which, opset, SUPPORTED_OPSETS)
            raise located from error
        finally:
            model.train(was_training)  # the exporter restores modes recursively from the wrapper's flag
        if frozen:
            raise FrozenValueError(which, frozen)
        proto = onnx.load(str(path))
    declare_output_shapes(proto, output_shapes(model))
    proto = optimize(proto)
    if freeze_reshape_shapes(proto):
        proto = optimize(proto)  # drops the shape chains the frozen reshapes no longer read, folds what they hid
    onnx.checker.check_model(proto, full_check=True)
    return proto


def output_shapes(model: VideoSlotModel) -> dict[str, list[int | str]]:
    """Output name -> shape, with the symbolic batch axis first."""
    return {
        OUTPUT_SLOTS: [BATCH_AXIS, model.num_slots, model.slot_dim],
        OUTPUT_MASKS: [BATCH_AXIS, model.num_slots, *model.mask_grid],
    }


def declare_output_shapes(proto: onnx.ModelProto, shapes: dict[str, list[int | str]]) -> None:
    """Write the known output shapes into ``proto`` (the tracer loses some, e.g. a ``reshape(B, -1, h, w)``).

    Shape inference and the checker then verify them against the graph, and the parity run against PyTorch.
    """
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        del dims[:]
        for size in shapes[output.name]:
            dim = dims.add()
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = size


def _trace(
    module: nn.Module,
    examples: tuple[torch.Tensor, ...],
    path: Path,
    opset: int,
    names: list[str],
    outputs: list[str],
) -> None:
    """Trace ``module`` into ``path`` with a dynamic batch axis on every input and output."""
    with _mha_fastpath_off():
        with torch.no_grad():
            # Constants a component computes lazily on its first call without gradients (the broadcast
            # decoder's folded first layer) must exist before tracing, or their computation is traced too.
            module(*examples)
        _export(module, examples, path, opset, names, outputs)


@contextlib.contextmanager
def _mha_fastpath_off() -> Iterator[None]:
    """The fused eval kernels of nn.MultiheadAttention / nn.TransformerEncoderLayer have no ONNX export."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _export(
    module: nn.Module,
    examples: tuple[torch.Tensor, ...],
    path: Path,
    opset: int,
    names: list[str],
    outputs: list[str],
) -> None:
    # Tracer warnings are not silenced here: the caller records them (training.export.tracing).
    with torch.no_grad(), warnings.catch_warnings(), _without_ir_dump():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            module,
            examples,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=outputs,
            dynamic_axes={name: {0: BATCH_AXIS} for name in (*names, *outputs)},
            do_constant_folding=True,
        )


@contextlib.contextmanager
def _without_ir_dump() -> Iterator[None]:
    """Keep ``torch.onnx.export`` from printing the whole TorchScript graph (hundreds of lines) to stdout when it
    fails: it switches its C++ log on whatever ``verbose`` says (``setup_onnx_logging`` tests the getter
    ``_C._jit_is_onnx_log_enabled`` itself, a function, for truth). The error is reported on its own."""
    if not hasattr(torch._C, "_jit_onnx_log"):  # another PyTorch: nothing to quiet
        yield
        return

    def discard(*args: Any) -> None:
        del args

    log = torch._C._jit_onnx_log
    torch._C._jit_onnx_log = discard
    try:
        yield
    finally:
        torch._C._jit_onnx_log = log


def example_inputs(model: VideoSlotModel, which: str, batch: int = EXAMPLE_BATCH) -> tuple[torch.Tensor, ...]:
    """Deterministic example inputs of one graph at ``batch``."""
    generator = torch.Generator().manual_seed(0)
    height, width = model.image_size
    frames = torch.rand(batch, 3, height, width, generator=generator)  # [B, 3, H, W]
    if which == FIRST_STEP:
        return (frames,)
    slots = torch.randn(batch, model.num_slots, model.slot_dim, generator=generator)  # [B, K, D]
    return frames, slots


def optimize(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Fold constants (shape checks included, which removes the tracer's ``If`` nodes) and clean up.

    Passes: ONNX shape inference with data propagation, the ONNX Script constant folder, then constants lifted
    to initializers, common subexpressions merged and dead nodes dropped. The batch axis
    stays dynamic. (``onnxscript.optimizer.optimize`` also applies pattern rewrites; it is ten times slower
    and made no measurable difference to ONNX Runtime, which folds again when it loads the graph.)
    """
    import onnx
    from onnxscript import ir, optimizer
    from onnxscript.ir.passes import common

    model = ir.from_proto(onnx.shape_inference.infer_shapes(proto, data_prop=True))
    optimizer.fold_constants(model)
    for cleanup in (
        common.LiftConstantsToInitializersPass(size_limit=0),
        common.CommonSubexpressionEliminationPass(),
        common.RemoveUnusedNodesPass(),
    ):
        cleanup(model)
    return onnx.shape_inference.infer_shapes(ir.to_proto(model), data_prop=True)
