"""The checks :class:`~plugins.model.VideoSlotModel` runs on every component's output, and their messages.

Each check raises :class:`~plugins.interfaces.ContractViolation` naming the component (its role, registry name,
class and the plugin that registered it) at the point where its output breaks the contract, instead of a failure
deep inside the next component or a shape that drifts frame after frame. They compare types, shapes and, where
given, the dtype (outside autocast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import torch

from plugins.interfaces import ContractViolation

if TYPE_CHECKING:
    from plugins.model import VideoSlotModel


def component_name(model: VideoSlotModel, role: str) -> str:
    """``the transition 'jumpy' (my_plugin.Jumpy, registered by plugin 'my_plugin')``: how every message names the
    component in ``role`` of ``model``."""
    cls = type(getattr(model, role))
    return (
        f"the {role} {model.specs[role].name!r} ({cls.__module__}.{cls.__qualname__}, registered by plugin "
        f"{model.component_plugins[role]!r})"
    )


def violation(model: VideoSlotModel, role: str, problem: str) -> NoReturn:
    """Raise :class:`ContractViolation` for the component in ``role`` of ``model``: ``problem`` completes the
    sentence that names it."""
    raise ContractViolation(f"{component_name(model, role)} {problem}")


def require(condition: bool, message: str) -> None:
    """Raise :class:`ContractViolation` with ``message`` unless ``condition`` holds (the contract checks' rule)."""
    if not condition:
        raise ContractViolation(message)


def check_type(model: VideoSlotModel, role: str, output: object, expected: type) -> None:
    """Raises :class:`ContractViolation` when the component in ``role`` returned something other than
    ``expected`` (a tuple or a bare tensor instead of its typed output)."""
    if not isinstance(output, expected):
        violation(model, role, f"returned {type(output).__name__}, not the {expected.__name__} of its contract")


def check_shape(
    model: VideoSlotModel,
    role: str,
    what: str,
    tensor: object,
    expected: tuple[int | None, ...],
    layout: str = "",
    dtype: tuple[torch.dtype, str] | None = None,
) -> None:
    """Name the component whose output breaks the contract, at once: a transition that adds slots would
    otherwise grow K frame after frame, a wrong width fails deep inside another component, and so do slots of
    another dtype than the features (``mixed dtype`` in the next component's layer norm or matmul).

    Args:
        model: the model the component belongs to.
        role: the component attribute (``"decoder"``).
        what: what the output is (``"masks"``).
        tensor: the output.
        expected: its shape for this model; ``None`` matches any size.
        layout: the contract's name for the shape, for the message.
        dtype: the dtype ``tensor`` must have and where that dtype comes from, for the message (``(torch.float32,
            "the encoder's features")``); ``None``: any dtype. Not checked while autocast is enabled for the
            tensor's device (mixed precision: there outputs legitimately come in the autocast dtype or in float32).

    Raises:
        ContractViolation: ``tensor`` is not a tensor, its shape is not ``expected``, or its dtype is not ``dtype``.
    """
    if not isinstance(tensor, torch.Tensor):
        violation(model, role, f"returned {what} of type {type(tensor).__name__}, not a tensor")
    if dtype is not None and tensor.dtype != dtype[0] and not torch.is_autocast_enabled(tensor.device.type):
        want, source = dtype
        violation(model, role, f"returned {what} of dtype {tensor.dtype}, expected {want}, the dtype of {source}")
    # ONNX export traces: sizes are tensors there, and the exporter checks the graph's signature itself. (Asked
    # first because it costs 0.1 us, where torch.onnx.is_in_onnx_export() costs 1.4 us.)
    if torch.jit.is_tracing():  # type: ignore[attr-defined,no-untyped-call]
        return
    shape = tuple(tensor.shape)
    if (
        shape != expected
        and (
            len(shape) != len(expected)
            or any(want is not None and got != want for got, want in zip(shape, expected, strict=True))
        )
        and not torch.onnx.is_in_onnx_export()  # the dynamo exporter, whose shapes are symbolic
    ):
        shown = "(" + ", ".join("*" if size is None else str(size) for size in expected) + ")"
        named = f" ({layout})" if layout else ""
        violation(model, role, f"returned {what} of shape {shape}, expected {shown}{named} for this model")


def require_attributes(model: VideoSlotModel, role: str, names: tuple[str, ...]) -> None:
    """Raise :class:`ContractViolation` unless the built ``role`` component of ``model`` has the attributes
    ``names`` (integers, or ``(h, w)`` pairs of integers for the ``*_grid`` ones) that its kind promises."""
    component = getattr(model, role)
    for name in names:
        value = getattr(component, name, None)
        if name.endswith("_grid"):
            valid = isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value)
            expected = "an (h, w) pair of integers"
        else:
            valid = isinstance(value, int) and value > 0
            expected = "a positive integer"
        if not valid:
            found = "does not set it" if value is None else f"set it to {value!r}"
            violation(model, role, f"must set the attribute {name} to {expected} in its constructor; it {found}")
