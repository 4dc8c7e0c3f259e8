"""The live objects of a training run (model, losses, optimiser, schedule, gradient scaler, step) and how a
configuration builds them; :mod:`training.loop` trains them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from plugins import ComponentRegistry, VideoSlotModel
from plugins.interfaces import Loss
from training.config import MIN_TRANSITION_CLIP, TrainConfig
from training.distributed import ProcessGroup, data_parallel
from training.schedule import warmup_cosine
from training.warm_start import freeze_all_but


@dataclass
class Run:
    """The live objects of a run."""

    model: VideoSlotModel
    trained: nn.Module  # the model, or the model under DistributedDataParallel (called the same way)
    losses: list[tuple[str, float, Loss]]
    optimizer: torch.optim.Adam
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    step: int
    elapsed_before_s: float = 0.0  # training seconds of earlier invocations, restored from the checkpoint
    started: float = 0.0  # perf_counter() when this invocation's training began
    non_finite_losses: int = 0  # steps in a row whose loss was not finite
    restored_world_size: int | None = None  # processes that wrote the checkpoint resumed from (None: unknown)
    loss_plugins: dict[str, str] = field(default_factory=dict)  # the plugin that registered each loss, by name

    def elapsed_s(self) -> float:
        """Seconds trained to reach the current step, over every invocation (see ``TrainerState.elapsed_s``)."""
        return self.elapsed_before_s + time.perf_counter() - self.started


def build_run(config: TrainConfig, registry: ComponentRegistry, device: str, group: ProcessGroup) -> Run:
    """The live objects of ``config``'s run at step 0, its components and losses built by ``registry``: the model
    on ``device`` (every component not in ``config.train_only`` frozen, when it is set; under ``torchrun`` wrapped
    in DistributedDataParallel by :func:`training.distributed.data_parallel`), Adam, the warm-up/cosine schedule
    and, for mixed precision on CUDA, a gradient scaler.

    Raises:
        ValueError: the clips have one frame and the transition would train (:func:`check_transition_trains`).
    """
    model = VideoSlotModel(**config.model, registry=registry).to(device)
    model.frame_fit = config.data.recorded_frame_fit  # every save of the run keeps it
    if config.train_only is not None:
        freeze_all_but(model, config.train_only)
    check_transition_trains(config, model)
    trained: nn.Module = data_parallel(model, device, group) if group.distributed else model
    losses = [(term.name, term.weight, _loss(registry, term.name, term.kwargs)) for term in config.losses]
    loss_plugins = {term.name: registry.owner("losses", term.name) for term in config.losses}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.optim.lr)
    schedule = config.optim
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, config.steps, schedule.warmup_fraction, schedule.final_lr_fraction)
    )
    use_amp = device == "cuda" and config.optim.mixed_precision
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    return Run(model, trained, losses, optimizer, scheduler, scaler, step=0, loss_plugins=loss_plugins)


def check_transition_trains(config: TrainConfig, model: VideoSlotModel) -> None:
    """Refuse training clips too short for ``model``'s transition to learn from.

    The transition makes the queries of every frame after a video's first (when serving, of every frame of a
    stream but its first), and runs only from a clip's second frame on: on one-frame clips it gets no gradient,
    and the run, its export and the service would go on with its random weights without a sign of it. A
    transition with nothing to train (no trainable parameters, as ``identity``, or frozen by ``train_only``)
    passes.

    Raises:
        ValueError: ``config.data.clip_length`` is below :data:`MIN_TRANSITION_CLIP` and the transition has
            trainable parameters; the message says why and what to do.
    """
    clip_length = config.data.clip_length
    if clip_length >= MIN_TRANSITION_CLIP or not any(p.requires_grad for p in model.transition.parameters()):
        return
    raise ValueError(
        f"clip_length={clip_length}: the {model.specs['transition'].name!r} transition makes the queries of every "
        f"frame after the first, and learns only from clips of {MIN_TRANSITION_CLIP} frames or more: on "
        f"{clip_length}-frame clips it would keep its random weights, and the model would track nothing from one "
        f"frame to the next. Train on clips of at least {MIN_TRANSITION_CLIP} frames (--clip-length "
        f"{MIN_TRANSITION_CLIP} or more; remove the videos shorter than that from the training data), or keep the "
        "transition out of --train-only (fitting the other components of a model whose transition is trained, "
        "given with --init-from)"
    )


def _loss(registry: ComponentRegistry, name: str, kwargs: dict[str, Any]) -> Loss:
    loss = registry.build("losses", name, kwargs)
    assert isinstance(loss, Loss)
    return loss
