"""The ``torch`` backend: :class:`~plugins.VideoSlotModel` run eagerly in PyTorch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plugins import SlotState, StepOutput, VideoSlotModel
from service.engine import Engine, EngineOutput, ModelCard, model_version
from service.images import PREPROCESSING


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
        """See :meth:`Engine.first_step`."""
        with torch.inference_mode():
            out, state = self.model.first_step(self._to_device(frames))
            return _to_host(out, state)

    def step(self, frames: np.ndarray, state: np.ndarray) -> EngineOutput:
        """See :meth:`Engine.step`."""
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


def load_engine(
    model_dir: Path, *, name: str, device: str, max_batch_size: int, options: Mapping[str, Any] | None = None
) -> TorchEngine:
    """Load ``model_dir`` (``config.json`` + ``model.safetensors``) onto ``device``.

    ``options`` must be empty: the torch backend's only setting, ``torch_threads``, is process-wide and set
    by the server.

    Raises:
        FileNotFoundError: a model file is missing.
        ValueError: the files are inconsistent, ``device`` is not usable here, or options were given.
    """
    if options:
        raise ValueError(f"the torch backend takes no backend options, got {sorted(options)}")
    try:
        torch_device = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"--device {device!r} is not a torch device: {error}") from error
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    model = VideoSlotModel.from_pretrained(model_dir, map_location=torch_device)
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
