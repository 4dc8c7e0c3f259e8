"""The ``torch`` backend: :class:`~plugins.VideoSlotModel` run eagerly in PyTorch.

A model that is random at inference (``gaussian_shared`` or ``smoothsa_preheat`` with ``eval_noise: "sample"``,
which draws fresh query noise for every first frame) is served, since it is a legitimate research setting, but with
a warning at load (:func:`determinism_warning`): its streams' slots depend on the server's random state, so two
identical streams get different slots, and a stream handed off to another replica or resumed does not continue as
it would have. The ONNX export refuses such a model (a random operator), and names the same setting
(:func:`plugins.random_settings.random_settings`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plugins import SlotState, StepOutput, VideoSlotModel
from plugins.failures import failure_site
from plugins.random_settings import random_settings
from service.engine import Engine, EngineOutput, ModelCard, check_batch, model_version
from service.images import PREPROCESSING

_log = logging.getLogger(__name__)


class ModelRunError(ValueError):
    """The model loaded, but its first run raised: a component's code fails (the message says which, and where).
    A ``ValueError``, as the other reasons a model cannot be loaded are."""


#: How far two runs of one model on one input may be apart and still count as the same (float noise of a GPU's
#: atomics, far below the export's parity bound of 1e-4), as ``torch.allclose``'s ``atol`` and ``rtol``.
REPEAT_TOLERANCE = 1e-4


class TorchEngine(Engine):
    """Runs a :class:`VideoSlotModel` under ``torch.inference_mode`` on one device.

    Args:
        model: the model, in eval mode.
        card: its model card.
    """

    def __init__(self, model: VideoSlotModel, card: ModelCard) -> None:
        self.model = model.eval()
        self.card = card
        self._device = torch.device(card.device)

    @property
    def max_concurrency(self) -> int:
        """Inference-mode forward passes only read the weights, so CPU calls may run in parallel threads."""
        return 64 if self._device.type == "cpu" else 1

    def first_step(self, frames: np.ndarray) -> EngineOutput:
        """See :meth:`Engine.first_step`; a batch of no frames is refused (:func:`~service.engine.check_batch`)."""
        check_batch(frames, image_size=self.card.image_size)
        with torch.inference_mode():
            out, state = self.model.first_step(self._to_device(frames))
            return _to_host(out, state)

    def step(self, frames: np.ndarray, state: np.ndarray) -> EngineOutput:
        """See :meth:`Engine.step`; a batch of no frames, or a ``state`` of another batch size, is refused
        (:func:`~service.engine.check_batch`): the model would broadcast one row against the other input's."""
        check_batch(frames, state, image_size=self.card.image_size)
        with torch.inference_mode():
            out, next_state = self.model.step(self._to_device(frames), SlotState(slots=self._to_device(state)))
            return _to_host(out, next_state)

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self._device, non_blocking=True)


def _to_host(out: StepOutput, state: SlotState) -> EngineOutput:
    return EngineOutput(
        slots=out.slots.float().cpu().numpy(),  # [B, K, D]
        masks=out.masks.float().cpu().numpy(),  # [B, K, h, w]
        state=state.slots.float().cpu().numpy(),  # [B, K, D]
    )


def determinism_warning(model: VideoSlotModel, device: torch.device, model_dir: Path) -> str | None:
    """Run ``model`` (in eval mode) twice on one small batch, ``first_step`` then ``step``, and say so when the two
    runs differ (beyond :data:`REPEAT_TOLERANCE`): the cause (the setting of :func:`random_settings` where the
    config has one) and the fix; ``None`` when they agree. Two ``first_step`` and two ``step`` calls at batch 1.
    """
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(1, 3, *model.image_size, generator=generator).to(device)  # [1, 3, H, W]
    runs = []
    with torch.inference_mode():
        for _ in range(2):
            first, state = model.first_step(frames)
            later, _ = model.step(frames, SlotState(slots=state.slots))
            runs.append({"first_step": first, "step": later})
    for which in ("first_step", "step"):
        for output in ("slots", "masks"):
            a, b = (getattr(run[which], output).float() for run in runs)
            if not torch.allclose(a, b, rtol=REPEAT_TOLERANCE, atol=REPEAT_TOLERANCE):
                apart = float((a - b).abs().max())
                return _random_model_message(model, model_dir, which, output, apart)
    return None


def _random_model_message(model: VideoSlotModel, model_dir: Path, which: str, output: str, apart: float) -> str:
    settings = random_settings(model.config)
    if settings:
        cause = " and ".join(setting.cause for setting in settings) + ", which draws fresh noise at inference"
        remedy = " and ".join(setting.remedy for setting in settings) + " (a sample kept in the weights)"
    else:
        cause = "a component draws random numbers in eval mode or keeps state from one call to the next"
        remedy = "make every component a pure function of its inputs at inference"
    return (
        f"{model_dir} is not deterministic: two {which} runs on the same frame gave {output} up to {apart:.3g} apart "
        f"({cause}). --backend torch serves it anyway, but each stream's slots depend on the server's random state: "
        "two identical streams get different slots, a stream handed off to another replica or resumed does not "
        "continue as it would have, and the ONNX export refuses the model. To make it deterministic, "
        f"{remedy}"
    )


def load_engine(
    model_dir: Path, *, name: str, device: str, max_batch_size: int, options: Mapping[str, Any] | None = None
) -> TorchEngine:
    """Load ``model_dir`` (``config.json`` + ``model.safetensors``) onto ``device``.

    ``options`` must be empty: the torch backend's only setting, ``torch_threads``, is process-wide and set
    by the server. A model whose outputs differ between two runs on the same input is loaded, with a warning
    logged (:func:`determinism_warning`).

    Raises:
        FileNotFoundError: a model file is missing.
        ValueError: the files are inconsistent, ``device`` is not usable here, or options were given;
            :class:`ModelRunError`, a subclass, when the model's first run raises (the message names the component
            whose code raised, and the line).
    """
    if options:
        raise ValueError(f"the torch backend takes no backend options, got {sorted(options)}")
    try:
        torch_device = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"--device {device!r} is not a torch device: {error}") from error
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    model = VideoSlotModel.from_pretrained(model_dir, map_location=torch_device).eval()
    try:
        warning = determinism_warning(model, torch_device, model_dir)
    except Exception as error:  # a component's code failed: say which, and where
        site = failure_site(model, error)
        raise ModelRunError(
            f"{model_dir}: the model failed on its first run (first_step, then step, on a random frame at batch 1)"
            f"{' ' + site if site else ''}: {type(error).__name__}: {error}"
        ) from error
    if warning is not None:
        _log.warning("%s", warning)
    card = ModelCard(
        name=name,
        version=model_version(model_dir),
        backend="torch",
        device=str(torch_device),
        image_size=model.image_size,
        num_slots=model.num_slots,
        slot_dim=model.slot_dim,
        mask_size=model.mask_grid,
        max_batch_size=max_batch_size,
        preprocessing=PREPROCESSING,
        frame_fit=model.frame_fit,
    )
    return TorchEngine(model, card)
