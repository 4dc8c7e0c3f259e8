"""Contract checks for a component inside a tiny model: the checks every built-in passes, for plugin authors.

A third-party plugin's own tests can run exactly what ``tests/plugins/test_conformance.py`` runs on the
built-ins (output shapes and finite values, masks and attention that sum to 1 over slots, a gradient for every
trainable parameter of the component, identical outputs after a save/load round trip, batch elements that do not
affect each other, and no state kept from one call to the next):

Example:
    >>> from plugins.testing import check_model_component, tiny_model_config
    >>> config = tiny_model_config(transition={"name": "identity"})
    >>> check_model_component(config, "transition")  # raises ContractViolation naming the broken rule

Each check builds its own model, so the component sees fresh weights; ``registry`` defaults to the installed
plugins (pass ``build_plugin_manager(load_entry_points=False).registry`` plus your own registration for an
uninstalled plugin).

:func:`check_exportable` (opt-in: it needs the ``onnx`` and ``onnxscript`` packages) exports the same tiny model
the way ``python -m training.export`` does and fails where the export would: a tensor value turned into a Python
branch or number (which the graph would freeze), an operator with no ONNX conversion, an operator TensorRT lacks,
a batch size fixed by a Python loop or branch over it. :func:`check_loss` checks a loss the way training uses it.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from plugins.contracts import require, violation
from plugins.export_check import check_exportable as check_exportable
from plugins.interfaces import ContractViolation as ContractViolation  # the model raises the same class
from plugins.loss_check import check_loss as check_loss
from plugins.model import COMPONENT_NAMES, VideoSlotModel
from plugins.registry import ComponentRegistry
from plugins.tiny_model import TINY_MODEL as TINY_MODEL
from plugins.tiny_model import build_tiny as build_tiny
from plugins.tiny_model import default_losses as default_losses
from plugins.tiny_model import tiny_model_config as tiny_model_config
from plugins.tiny_model import tiny_video as tiny_video
from plugins.types import StepOutput, VideoOutput

ROLES = ("encoder", "initializer", "aggregator", "transition", "decoder")

BATCH_ATOL = 1e-5
"""How far (absolutely) batch element 0's outputs in a batch may be from its outputs alone, plus
:data:`BATCH_RTOL`: float32 kernels round differently at another batch size, by far less."""
BATCH_RTOL = 1e-4
"""How far, relative to the largest magnitude of the output alone, batch element 0's outputs in a batch may be from
its outputs alone (on top of :data:`BATCH_ATOL`)."""


def check_model_component(config: dict[str, Any], role: str, registry: ComponentRegistry | None = None) -> None:
    """Run every contract check on the component in ``role`` of the model ``config``.

    Args:
        config: ``VideoSlotModel`` keyword arguments (see :func:`tiny_model_config`).
        role: ``encoder``, ``initializer``, ``aggregator``, ``transition`` or ``decoder``.
        registry: where the component names resolve; default: the installed plugins.

    Raises:
        ContractViolation: a rule is broken (the message names it). A component output of the wrong type, shape or
            dtype is the model's own per-step check, whose message names the component, its class and its plugin;
            so do the messages about batch elements that affect each other and state kept between calls.
        ValueError: ``role`` is not a model role.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    check_outputs(config, registry)
    check_sums_to_one(config, registry)
    check_gradients(config, role, registry)
    check_round_trip(config, registry)
    check_no_state_between_calls(config, registry)
    check_batch_independence(config, registry)


def check_outputs(config: dict[str, Any], registry: ComponentRegistry | None = None) -> None:
    """Outputs have the shapes of the contract and finite values."""
    model = build_tiny(config, registry).eval()
    video = tiny_video(model)
    batch, length = video.shape[:2]
    with torch.no_grad():
        output = model(video)
    k, d = model.num_slots, model.slot_dim
    h, w = model.mask_grid
    require(isinstance(output, VideoOutput), f"forward returned {type(output).__name__}, not VideoOutput")
    require(all(isinstance(s, StepOutput) for s in output.steps), "a step did not return StepOutput")
    slots_shape, masks_shape = (batch, length, k, d), (batch, length, k, h, w)
    require(output.slots.shape == slots_shape, f"slots {tuple(output.slots.shape)}, want {slots_shape}")
    require(output.masks.shape == masks_shape, f"masks {tuple(output.masks.shape)}, want {masks_shape}")
    require(output.reconstruction.shape == output.target.shape, "reconstruction and target differ in shape")
    tokens = (batch, length, h * w)
    require(output.reconstruction.shape[:3] == tokens, "reconstruction is not one token per mask pixel")
    for step in output.steps:
        attention, features = step.attention, step.features
        require(attention.shape[0] == batch and attention.shape[2] == k, f"attention {tuple(attention.shape)}")
        require(
            attention.shape[3] == features.shape[1] == step.grid[0] * step.grid[1],
            f"attention over {attention.shape[3]} tokens, features {features.shape[1]}, grid {step.grid}",
        )
    for label, tensor in (("slots", output.slots), ("masks", output.masks), ("reconstruction", output.reconstruction)):
        require(bool(torch.isfinite(tensor).all()), f"{label} hold NaN or infinite values")


def check_sums_to_one(config: dict[str, Any], registry: ComponentRegistry | None = None) -> None:
    """Masks and attention sum to 1 over slots at every pixel and token."""
    model = build_tiny(config, registry).eval()
    with torch.no_grad():
        output = model(tiny_video(model))
    worst = float((output.masks.sum(dim=2) - 1).abs().max())
    require(worst < 1e-5, f"masks sum to 1 over slots only within {worst:.3g}")
    for step in output.steps:
        worst = float((step.attention.sum(dim=2) - 1).abs().max())
        require(worst < 1e-5, f"attention sums to 1 over slots only within {worst:.3g}")


def check_gradients(config: dict[str, Any], role: str, registry: ComponentRegistry | None = None) -> None:
    """Every trainable parameter of the component in ``role`` gets a non-zero gradient from the losses."""
    model = build_tiny(config, registry).train()
    default_losses(model(tiny_video(model)), registry).backward()  # type: ignore[no-untyped-call]
    component = getattr(model, role)
    trainable = {name: p for name, p in component.named_parameters() if p.requires_grad}
    starved = [name for name, p in trainable.items() if p.grad is None or not torch.any(p.grad != 0)]
    require(not starved, f"{role} parameters without gradient: {starved}")


def check_round_trip(config: dict[str, Any], registry: ComponentRegistry | None = None) -> None:
    """``save_pretrained`` then ``from_pretrained`` gives the same config and exactly the same outputs (each run
    from the same global random state, so that a component random at inference, such as
    ``gaussian_shared(eval_noise="sample")``, draws the same noise in both)."""
    model = build_tiny(config, registry).eval()
    video = tiny_video(model)
    with tempfile.TemporaryDirectory(prefix="slotstream-contract-") as folder:
        model.save_pretrained(Path(folder))
        torch.manual_seed(123)  # a different seed: nothing random may leak into the reloaded model
        loaded = VideoSlotModel.from_pretrained(Path(folder), registry=registry)
    require(loaded.config == model.config, "the reloaded model's config differs from the saved one")
    with torch.no_grad():
        torch.manual_seed(0)
        before = model(video)
        torch.manual_seed(0)
        after = loaded(video)
    require(torch.equal(after.slots, before.slots), "the reloaded model's slots differ from the saved model's")
    require(torch.equal(after.masks, before.masks), "the reloaded model's masks differ from the saved model's")


def check_no_state_between_calls(config: dict[str, Any], registry: ComponentRegistry | None = None) -> None:
    """The same clip run twice through one model (in eval mode, the global random state reset before each run)
    gives every component exactly the same outputs: nothing a component keeps from one call to the next (a hidden
    state in ``self.h``, a running statistic) changes what it returns. The server runs one model for every stream,
    so such a state would carry one stream's frames into another's; the state between frames is the slots the
    model passes in.

    Raises:
        ContractViolation: naming the first component (in the order they run) whose outputs differ, which output,
            the frame and by how much.
    """
    model = build_tiny(config, registry).eval()
    video = tiny_video(model)
    first, second = _component_calls(model, video), _component_calls(model, video)
    for before, after in zip(first, second, strict=False):
        for name, tensor in after.outputs.items():
            if not torch.equal(tensor, before.outputs[name]):
                worst = _max_difference(tensor, before.outputs[name])
                violation(
                    model,
                    after.role,
                    f"returned other {name} for the same input on a second call (frame {after.frame}: max "
                    f"|difference| {worst:.3g}): a component must keep nothing from one call to the next in its "
                    "attributes, because the server runs one model for every stream (the state between frames is the "
                    "slots the model passes in)",
                )


def check_batch_independence(config: dict[str, Any], registry: ComponentRegistry | None = None) -> None:
    """Batch element 0 gives every component the same outputs alone as in a batch with two other clips, within
    float32 rounding (:data:`BATCH_ATOL` + :data:`BATCH_RTOL` times the largest magnitude): each element is
    computed from its own inputs only. The server batches the frames of independent streams together, so a mean,
    a norm or attention over the batch axis would mix them. Eval mode, where batch norm uses its running statistics
    (training may mix the batch); each run gets a freshly built model, so that state kept between calls does not
    count here (:func:`check_no_state_between_calls` checks it).

    An output that is random at inference (``gaussian_shared(eval_noise="sample")``'s queries: element 0 alone
    draws other noise than in a batch) is found by running element 0 alone again from another seed; it is not
    compared, and element 0's draw from the run alone is put in its place in the batch, so that what runs after
    it still is compared.

    Raises:
        ContractViolation: naming the first component (in the order they run) whose outputs for element 0 differ,
            which output, the frame and by how much.
    """
    model = build_tiny(config, registry).eval()
    video = tiny_video(model, batch=3)
    alone = _component_calls(build_tiny(config, registry).eval(), video[:1])
    random = _random_outputs(build_tiny(config, registry).eval(), video[:1], alone)
    batched = _component_calls(
        model, video, hold=lambda index: {name: alone[index].outputs[name] for name in random.get(index, ())}
    )
    held = " (outputs random at inference held to element 0's own draw)" if random else ""
    for index, (together, single) in enumerate(zip(batched, alone, strict=False)):
        for name, tensor in single.outputs.items():
            within = together.outputs.get(name)
            if within is None or within.shape[1:] != tensor.shape[1:] or name in random.get(index, ()):
                continue  # a shape the model's own checks judge, or a random draw
            worst = _max_difference(within[:1], tensor)
            tolerance = _tolerance(tensor)
            if not worst <= tolerance:
                violation(
                    model,
                    single.role,
                    f"returned other {name} for batch element 0 in a batch of {video.shape[0]} clips than alone "
                    f"(frame {single.frame}: max |difference| {worst:.3g}, beyond float32 rounding, {tolerance:.3g})"
                    f"{held}: each batch element must be computed from its own inputs only, because the server "
                    "batches independent streams together (a mean, a norm or attention over the batch axis mixes "
                    "them)",
                )


def _random_outputs(model: VideoSlotModel, video: torch.Tensor, reference: list[_Call]) -> dict[int, set[str]]:
    """The outputs (by call index, then name) that are random at inference: those that differ, beyond
    :func:`_tolerance`, from ``reference`` (the same run from seed 0) when ``model`` runs ``video`` from another
    seed. Each one found is replaced by its ``reference`` value as the run goes, so that a component that only
    takes a random input is not counted."""
    found: dict[int, set[str]] = {}

    def hold(index: int) -> dict[str, torch.Tensor]:
        return {name: reference[index].outputs[name] for name in found.get(index, ())}

    def compare(index: int, outputs: dict[str, torch.Tensor]) -> None:
        if index >= len(reference):
            return
        expected = reference[index].outputs
        differing = {
            name
            for name, tensor in outputs.items()
            if name in expected
            and tensor.shape == expected[name].shape
            and not _max_difference(tensor, expected[name]) <= _tolerance(expected[name])
        }
        if differing:
            found[index] = differing

    _component_calls(model, video, seed=1, hold=hold, inspect=compare)
    return found


def _tolerance(tensor: torch.Tensor) -> float:
    """Float32 rounding for an output like ``tensor``: :data:`BATCH_ATOL` + :data:`BATCH_RTOL` times its largest
    magnitude."""
    return BATCH_ATOL + BATCH_RTOL * (float(tensor.abs().max()) if tensor.numel() else 0.0)


@dataclasses.dataclass(frozen=True)
class _Call:
    """One call of a model component: its role, the frame (0 first) and its output tensors by name."""

    role: str
    frame: int
    outputs: dict[str, torch.Tensor]


def _component_calls(
    model: VideoSlotModel,
    video: torch.Tensor,
    *,
    seed: int = 0,
    hold: Callable[[int], dict[str, torch.Tensor]] | None = None,
    inspect: Callable[[int, dict[str, torch.Tensor]], None] | None = None,
) -> list[_Call]:
    """Every component call of one run of ``model`` on ``video`` (no gradient, global random state seeded
    ``seed``), in the order they ran, with copies of their output tensors.

    ``inspect(index, outputs)`` sees each call's outputs as they come (index: 0 for the first call); then
    ``hold(index)`` names outputs to replace: their leading batch rows become the tensors it gives (for the rest of
    the run and in the record)."""
    calls: list[_Call] = []
    frames = [-1]  # the encoder runs first on every frame

    def recorder(role: str) -> Any:
        def record(module: torch.nn.Module, args: Any, output: Any) -> Any:
            del module, args  # Unused.
            frames[0] += role == "encoder"
            index = len(calls)
            if inspect is not None:
                inspect(index, _output_tensors(role, output))
            replaced = _with_rows(role, output, hold(index)) if hold is not None else output
            calls.append(_Call(role, frames[0], _output_tensors(role, replaced)))
            return None if replaced is output else replaced

        return record

    handles = [getattr(model, role).register_forward_hook(recorder(role)) for role in COMPONENT_NAMES]
    try:
        torch.manual_seed(seed)
        with torch.no_grad():
            model(video)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _with_rows(role: str, output: Any, rows: dict[str, torch.Tensor]) -> Any:
    """``output`` with the leading batch rows of its tensors named in ``rows`` (names as :func:`_output_tensors`
    gives them) replaced by those tensors; ``output`` itself when there is nothing to replace."""
    if not rows:
        return output

    def replaced(tensor: torch.Tensor, name: str) -> torch.Tensor:
        row = rows.get(name)
        if row is None or tensor.shape[1:] != row.shape[1:] or tensor.shape[0] < row.shape[0]:
            return tensor
        tensor = tensor.clone()
        tensor[: row.shape[0]] = row.to(tensor.dtype)
        return tensor

    if isinstance(output, torch.Tensor):
        return replaced(output, "queries" if role == "transition" else "output")
    changes = {name: replaced(getattr(output, name), name) for name in rows if hasattr(output, name)}
    return dataclasses.replace(output, **changes)


def _output_tensors(role: str, output: object) -> dict[str, torch.Tensor]:
    """The tensors of a component's output by name (a transition's bare tensor is its ``queries``)."""
    if isinstance(output, torch.Tensor):
        return {"queries" if role == "transition" else "output": output.detach().clone()}
    if not dataclasses.is_dataclass(output):
        return {}
    fields = {field.name: getattr(output, field.name) for field in dataclasses.fields(output)}
    return {name: value.detach().clone() for name, value in fields.items() if isinstance(value, torch.Tensor)}


def _max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
