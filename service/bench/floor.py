"""The compute floor of a model on this machine: FLOPs per frame over the measured matrix-multiply rate.

FLOPs are counted with PyTorch's ``FlopCounterMode`` on one frame (batch 1): matrix multiplications and
convolutions (``2 * M * N * K`` per product), which is where slot models spend their arithmetic; element-wise
operations, normalisations and softmaxes are not counted, so the floor is a lower bound. The rate is the best
of repeated fp32 ``torch.mm`` calls on square matrices with the benchmark's thread count: what the cores
sustain on the friendliest kernel there is. ``measured / floor`` then says how far a backend is from doing
nothing but that arithmetic at that rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from plugins import SlotState, VideoSlotModel
from plugins.model import COMPONENT_NAMES


@dataclass(frozen=True)
class FlopCount:
    """Multiply-add FLOPs of one frame.

    Attributes:
        first_step: FLOPs of ``first_step`` (encoder, initializer, ``first_iters`` iterations, decoder).
        step: FLOPs of ``step`` (encoder, transition, ``later_iters`` iterations, decoder).
        by_operator: operator -> FLOPs of ``step``.
        by_component: step name (``first_step``, ``step``) -> model component (``encoder``, ``initializer``,
            ``aggregator``, ``transition``, ``decoder``) -> FLOPs; components a step does not run are absent.
    """

    first_step: int
    step: int
    by_operator: dict[str, int]
    by_component: dict[str, dict[str, int]]


def count_flops(model: VideoSlotModel) -> FlopCount:
    """Count the FLOPs of both steps of ``model`` on one frame."""
    from torch.utils.flop_counter import FlopCounterMode

    height, width = model.image_size
    frames = torch.rand(1, 3, height, width)  # [1, 3, H, W]
    with torch.inference_mode():
        model.first_step(frames)  # untimed: constants computed on the first call (decoder folds) are not per frame
        with FlopCounterMode(display=False) as counter:
            _, state = model.first_step(frames)
        first = int(counter.get_total_flops())
        first_components = _by_component(model, counter.get_flop_counts())
        with FlopCounterMode(display=False) as counter:
            model.step(frames, SlotState(slots=state.slots))
        step = int(counter.get_total_flops())
        step_components = _by_component(model, counter.get_flop_counts())
        operators = {str(op): int(flops) for op, flops in counter.get_flop_counts().get("Global", {}).items()}
    components = {"first_step": first_components, "step": step_components}
    return FlopCount(first_step=first, step=step, by_operator=operators, by_component=components)


def _by_component(model: VideoSlotModel, counts: dict[str, dict[Any, int]]) -> dict[str, int]:
    """FLOPs per component. The steps call components directly (not through ``model.forward``), so the
    counter names each component's subtree by its class name."""
    out: dict[str, int] = {}
    for component in COMPONENT_NAMES:
        module = getattr(model, component)
        flops = sum(counts.get(type(module).__name__, {}).values())
        if flops:
            out[component] = int(flops)
    return out


def matmul_rate(size: int = 512, repeats: int = 30) -> float:
    """Best fp32 matrix-multiply rate in FLOP/s of ``size x size`` products with torch's current threads."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)  # warm up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - started)
    return 2.0 * size**3 / best
