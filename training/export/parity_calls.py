"""The calls of the export's parity run, as every implementation makes them (the runtime under test, PyTorch in
float32 and in float64): a video fed recurrently, then a ``first_step`` and a ``step`` at each batch size."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from plugins import SlotState, VideoSlotModel
from service.backends.manifest import FIRST_STEP, STEP


@dataclass(frozen=True)
class Outputs:
    """One call's slots ``[B, K, D]`` and soft masks ``[B, K, h, w]``."""

    slots: np.ndarray
    masks: np.ndarray


Caller = Callable[[np.ndarray, np.ndarray | None], tuple[Outputs, np.ndarray]]
"""One call of some implementation: ``frames [B, 3, H, W]`` and the previous slots (``None``: ``first_step``)
-> its outputs and the slots to feed its next call."""


def run_calls(call: Caller, video: np.ndarray, fed: list[tuple[int, np.ndarray]]) -> list[Outputs]:
    """The parity run's calls, in order: every frame of ``video`` (``[T, B, 3, H, W]``) fed recurrently with
    ``call``'s own slots, then for each batch size and slots in ``fed`` a ``first_step`` call and a ``step`` call
    fed those slots, both on the video's frames tiled to that size."""
    outputs: list[Outputs] = []
    state: np.ndarray | None = None
    for frames in video:
        out, state = call(frames, state)
        outputs.append(out)
    flat = video.reshape(-1, *video.shape[2:])  # [T, B, 3, H, W] -> [T * B, 3, H, W]
    for size, slots in fed:
        frames = tile(flat, size)  # [size, 3, H, W]
        outputs.append(call(frames, None)[0])
        outputs.append(call(frames, slots)[0])
    return outputs


def call_names(video: np.ndarray, batch_sizes: tuple[int, ...]) -> list[str]:
    """What each call of :func:`run_calls` is, for messages."""
    frames = [f"frame {index} of the video" for index in range(len(video))]
    return frames + [f"the {which} call at batch {size}" for size in batch_sizes for which in (FIRST_STEP, STEP)]


def fed_states(model: VideoSlotModel, video: np.ndarray, batch_sizes: tuple[int, ...]) -> list[tuple[int, np.ndarray]]:
    """Each batch size with the slots every implementation's ``step`` call there is fed: fp32 PyTorch's ``first_step``
    slots for the same frames, so that those calls compare one step from the same inputs."""
    flat = video.reshape(-1, *video.shape[2:])  # [T, B, 3, H, W] -> [T * B, 3, H, W]
    caller = torch_caller(model)
    return [(size, caller(tile(flat, size), None)[0].slots) for size in batch_sizes]


def torch_caller(model: VideoSlotModel) -> Caller:
    """``model`` as a :data:`Caller`, in the dtype of its parameters (frames and fed slots are cast to it)."""
    dtype = next(model.parameters()).dtype

    def call(frames: np.ndarray, state: np.ndarray | None) -> tuple[Outputs, np.ndarray]:
        with torch.inference_mode():
            tensor = torch.from_numpy(frames).to(dtype)
            if state is None:
                out, next_state = model.first_step(tensor)
            else:
                out, next_state = model.step(tensor, SlotState(slots=torch.from_numpy(state).to(dtype)))
        return Outputs(out.slots.numpy(), out.masks.numpy()), next_state.slots.numpy()

    return call


def distances(a: list[Outputs], b: list[Outputs]) -> np.ndarray:
    """``[calls, 2]``: :func:`max_abs` of each call's slots and soft masks."""
    return np.array([[max_abs(x.slots, y.slots), max_abs(x.masks, y.masks)] for x, y in zip(a, b, strict=True)])


def max_abs(a: np.ndarray, b: np.ndarray | torch.Tensor) -> float:
    """The largest absolute difference; infinite when either side has a NaN or an infinity (which ``max`` over
    NaN would otherwise drop: ``max(0.0, nan)`` is ``0.0``)."""
    other = b.numpy() if isinstance(b, torch.Tensor) else b
    if a.shape != other.shape:
        # A RuntimeError, as for other failed checks: the export, not the command line, is wrong.
        raise RuntimeError(f"runtime output shape {a.shape} differs from PyTorch's {other.shape}")
    difference = np.abs(a.astype(np.float64) - other.astype(np.float64))
    return float(difference.max()) if np.isfinite(difference).all() else math.inf


def tile(frames: np.ndarray, size: int) -> np.ndarray:
    """A batch of ``size`` taken from ``frames`` (``[N, ...]``) repeated in turn: ``[size, ...]``, contiguous."""
    repeats = -(-size // frames.shape[0])  # ceil(size / N) copies reach size
    return np.ascontiguousarray(np.concatenate([frames] * repeats)[:size])
