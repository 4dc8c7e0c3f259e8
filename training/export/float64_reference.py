"""The float64 reference of the export's parity run: where a runtime's maxima exceed the limit, how far it, fp32
PyTorch and fp32 PyTorch with its weights moved by one unit in the last place are from float64 PyTorch
(:func:`training.export.parity.measure_parity` states the rule and why)."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from plugins import VideoSlotModel
from service.backends.manifest import Float64Reference, ParityReport
from training.export.parity_calls import Outputs, call_names, distances, run_calls, torch_caller

MOVED_WEIGHT_RUNS = 4
"""fp32 PyTorch runs with every weight moved by one unit in the last place that the rounding figure includes next to
the model as saved."""
ROUNDING_FACTOR = 3.0
"""How many times the rounding figure a runtime may be from float64 PyTorch beyond the limit."""
MOVED_WEIGHT_SEED = 0
"""Seed of the directions the weights are moved in."""


def float64_summary(report: ParityReport) -> str | None:
    """One sentence on ``report``'s float64 reference (``None`` where none ran): how far the runtime and fp32
    PyTorch are from float64 PyTorch, and whether the runtime stayed within fp32 rounding."""
    check = report.float64_reference
    if check is None:
        return None
    if check.error:
        return f"float64 PyTorch, which would tell fp32 rounding from an export fault, could not run: {check.error}"
    measured = (
        f"against float64 PyTorch, {report.runtime} is up to {check.runtime_slots_max_abs:.3g} (slots) and "
        f"{check.runtime_masks_max_abs:.3g} (soft masks) away, fp32 PyTorch itself up to "
        f"{check.pytorch_slots_max_abs:.3g} and {check.pytorch_masks_max_abs:.3g}, and up to "
        f"{check.rounding_slots_max_abs:.3g} and {check.rounding_masks_max_abs:.3g} with its weights moved by one "
        f"unit in the last place ({check.moved_weight_runs} runs)"
    )
    bound = f"{check.rounding_factor:g} times fp32 rounding plus the limit {report.max_abs_threshold:g}"
    if check.excess_max_abs <= report.max_abs_threshold:
        return (
            f"{measured}: {report.runtime} stays within {bound} at every call, so its differences from fp32 "
            "PyTorch above the limit are fp32 rounding, not the export"
        )
    return (
        f"{measured}; at {check.excess_at} {report.runtime} is {check.runtime_at_excess:.3g} from float64 where fp32 "
        f"PyTorch itself is {check.pytorch_at_excess:.3g} (up to {check.rounding_at_excess:.3g} with moved weights), "
        f"beyond {bound} by {check.excess_max_abs - report.max_abs_threshold:.3g}: more than fp32 rounding explains"
    )


def float64_check(
    model: VideoSlotModel,
    video: np.ndarray,
    batch_sizes: tuple[int, ...],
    fed: list[tuple[int, np.ndarray]],
    measured: list[Outputs],
    reference: list[Outputs],
) -> Float64Reference:
    """The runtime's outputs ``measured`` and fp32 PyTorch's ``reference`` (per call of :func:`run_calls`)
    against float64 PyTorch, with the rounding figures of :func:`measure_parity`'s rule."""
    try:
        exact = run_calls(torch_caller(copy.deepcopy(model).double()), video, fed)
    except (RuntimeError, TypeError, ValueError) as error:  # a component that computes in float32 only
        return _float64_unavailable(f"{type(error).__name__}: {error}")
    runtime = distances(measured, exact)  # [calls, 2]: slots, masks
    pytorch = distances(reference, exact)
    rounding = pytorch
    generator = torch.Generator().manual_seed(MOVED_WEIGHT_SEED)
    for _ in range(MOVED_WEIGHT_RUNS):
        moved = run_calls(torch_caller(_moved_weights(model, generator)), video, fed)
        rounding = np.maximum(rounding, distances(moved, exact))
    excess = runtime - ROUNDING_FACTOR * rounding
    excess[np.isnan(excess)] = math.inf  # inf - inf: float64 PyTorch itself broke down (NaN), nothing to judge by
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
    return Float64Reference(
        runtime_slots_max_abs=float(runtime[:, 0].max()),
        runtime_masks_max_abs=float(runtime[:, 1].max()),
        pytorch_slots_max_abs=float(pytorch[:, 0].max()),
        pytorch_masks_max_abs=float(pytorch[:, 1].max()),
        rounding_slots_max_abs=float(rounding[:, 0].max()),
        rounding_masks_max_abs=float(rounding[:, 1].max()),
        moved_weight_runs=MOVED_WEIGHT_RUNS,
        rounding_factor=ROUNDING_FACTOR,
        excess_max_abs=float(excess.max()),
        excess_at=f"{call_names(video, batch_sizes)[int(worst[0])]} ({('slots', 'soft masks')[int(worst[1])]})",
        runtime_at_excess=float(runtime[worst]),
        pytorch_at_excess=float(pytorch[worst]),
        rounding_at_excess=float(rounding[worst]),
    )


def _float64_unavailable(error: str) -> Float64Reference:
    """The record of a float64 reference that could not run: infinite figures (the check fails) and ``error``."""
    inf = math.inf
    return Float64Reference(
        runtime_slots_max_abs=inf,
        runtime_masks_max_abs=inf,
        pytorch_slots_max_abs=inf,
        pytorch_masks_max_abs=inf,
        rounding_slots_max_abs=inf,
        rounding_masks_max_abs=inf,
        moved_weight_runs=0,
        rounding_factor=ROUNDING_FACTOR,
        excess_max_abs=inf,
        excess_at="",
        runtime_at_excess=inf,
        pytorch_at_excess=inf,
        rounding_at_excess=inf,
        error=error,
    )


def _moved_weights(model: VideoSlotModel, generator: torch.Generator) -> VideoSlotModel:
    """A copy of ``model`` with every floating-point parameter moved to the next representable value up or down
    (the direction drawn from ``generator``): a change as small as the dtype can express."""
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in moved.parameters():
            if parameter.is_floating_point():
                up = (torch.rand(parameter.shape, generator=generator) < 0.5).to(parameter.device)
                toward = torch.full_like(parameter, math.inf).where(up, -math.inf)
                parameter.copy_(torch.nextafter(parameter, toward))
    return moved
