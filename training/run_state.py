"""The live objects of a training run (model, losses, optimiser, schedule, gradient scaler, step) and how a
configuration builds them; :mod:`training.loop` trains them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from plugins import ComponentRegistry, VideoSlotModel
from plugins.config import ComponentSpec
from plugins.interfaces import Loss
from plugins.model import COMPONENT_NAMES
from plugins.registry import DIRECT_REGISTRATION, ComponentKind, RegistryError, configuration_arguments
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
    losses_warned: set[str] = field(default_factory=set)  # losses already warned about (training/step.py)
    loss_record: dict[str, Any] = field(default_factory=dict)  # what checkpoints record of the losses (losses_record)

    def elapsed_s(self) -> float:
        """Seconds trained to reach the current step, over every invocation (see ``TrainerState.elapsed_s``)."""
        return self.elapsed_before_s + time.perf_counter() - self.started


def build_run(
    config: TrainConfig, registry: ComponentRegistry, device: str, group: ProcessGroup, *, restoring: bool = False
) -> Run:
    """The live objects of ``config``'s run at step 0, its components and losses built by ``registry``: the model
    on ``device`` (every component not in ``config.train_only`` frozen, when it is set; under ``torchrun`` wrapped
    in DistributedDataParallel by :func:`training.distributed.data_parallel`), Adam, the warm-up/cosine schedule
    and, for mixed precision on CUDA, a gradient scaler.

    ``restoring`` (a checkpoint's weights will replace the model's) builds the components without their
    :attr:`~plugins.interfaces.Component.initial_weight_arguments`: a run resumed in another folder or on another
    machine needs no file its encoder started from (``--encoder-weights``, perhaps a relative path).

    Raises:
        ValueError: the clips have one frame and the transition would train (:func:`check_transition_trains`).
    """
    settings = _without_initial_weights(config.model, registry) if restoring else config.model
    model = VideoSlotModel(**settings, registry=registry).to(device)
    model.frame_fit = config.data.recorded_frame_fit  # every save of the run keeps it
    if config.train_only is not None:
        freeze_all_but(model, config.train_only)
    check_transition_trains(config, model)
    trained: nn.Module = data_parallel(model, device, group) if group.distributed else model
    losses = [(term.name, term.weight, _loss(registry, term.name, term.kwargs)) for term in config.losses]
    loss_plugins = {term.name: registry.owner("losses", term.name) for term in config.losses}
    record = losses_record(config, [loss for _, _, loss in losses], loss_plugins, registry)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.optim.lr)
    schedule = config.optim
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, config.steps, schedule.warmup_fraction, schedule.final_lr_fraction)
    )
    use_amp = device == "cuda" and config.optim.mixed_precision
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    return Run(
        model, trained, losses, optimizer, scheduler, scaler, step=0, loss_plugins=loss_plugins, loss_record=record
    )


def _without_initial_weights(model: dict[str, Any], registry: ComponentRegistry) -> dict[str, Any]:
    """The ``model`` section of a training config with each component's initial weight arguments left out (their
    defaults load nothing). A component that cannot be read or is not registered is left as it is, for the
    constructor to report."""
    settings = dict(model)
    for role in COMPONENT_NAMES:
        try:
            spec = ComponentSpec.parse(model[role])
            component = registry.get(ComponentKind(f"{role}s"), spec.name)
        except (KeyError, ValueError, TypeError, RegistryError):
            continue
        dropped = {key: value for key, value in spec.kwargs.items() if key not in component.initial_weight_arguments}
        if dropped != spec.kwargs:
            settings[role] = {"name": spec.name, "kwargs": dropped}
    return settings


def losses_record(
    config: TrainConfig, losses: list[Loss], loss_plugins: dict[str, str], registry: ComponentRegistry
) -> dict[str, Any]:
    """What a checkpoint records of the run's losses (:data:`training.checkpoint.LOSSES_FILE`), as JSON values.

    Args:
        config: the run's configuration; its ``losses`` built ``losses``, in the same order.
        losses: the built losses.
        loss_plugins: the plugin that registered each loss, by name.
        registry: the registry that built them (it knows the plugins' versions and distributions).

    Returns:
        ``losses``: each term's ``name``, ``weight`` and ``kwargs``, the arguments its loss was built with, defaults
        filled in (:func:`~plugins.registry.configuration_arguments`), so the record says what the run computed even
        after the plugin changes a default; ``plugins`` (loss name -> plugin), and the ``plugin_versions`` and
        ``plugin_distributions`` of those plugins where the registry knows them, as a saved ``config.json`` records
        them for the model's components.
    """
    terms = [
        {"name": term.name, "weight": term.weight, "kwargs": configuration_arguments(type(loss), term.kwargs)}
        for term, loss in zip(config.losses, losses, strict=True)
    ]
    plugins = sorted(set(loss_plugins.values()))
    record: dict[str, Any] = json.loads(  # as the file holds it: tuples as lists, so a resume compares like with like
        json.dumps(
            {
                "losses": terms,
                "plugins": dict(loss_plugins),
                "plugin_versions": {p: registry.plugin_versions[p] for p in plugins if p in registry.plugin_versions},
                "plugin_distributions": {
                    p: registry.plugin_distributions[p] for p in plugins if p in registry.plugin_distributions
                },
            },
            default=str,  # a value no JSON holds, which train_config.json then cannot record either
        )
    )
    return record


def check_components_installed(model: VideoSlotModel) -> None:
    """Refuse a model component registered directly (:data:`~plugins.registry.DIRECT_REGISTRATION`: by the code
    that builds the registry, such as a ``--config`` file calling ``default_registry().add_transition``, not by an
    installed plugin's hook), for a run trained with the default registry.

    Its saved models would record no plugin to install: ``python -m training.evaluate``, the export, the model card
    and the service load the installed plugins in their own processes, which know no such component, so none of
    them could build the model. (Losses are not checked: no saved model holds them. A caller that trains with a
    registry of its own loads the run's models with that registry, and is not checked either.)

    Raises:
        RegistryError: the message names the component, its class, and how to package it as a plugin.
    """
    direct = [
        f"the {role} {model.specs[role].name!r} ({type(getattr(model, role)).__module__}."
        f"{type(getattr(model, role)).__qualname__})"
        for role, plugin in model.component_plugins.items()
        if plugin == DIRECT_REGISTRATION
    ]
    if not direct:
        return
    raise RegistryError(
        f"{', '.join(direct)}: registered directly (by a `registry.add_...` call outside a plugin's "
        "`slotstream_register_components` hook), not by an installed plugin, so the models this run saves could "
        "be loaded only by a process that runs that code again: `python -m training.evaluate`, the export, the model "
        "card and the service, which load the installed plugins, could not build them. Package the component as a "
        "plugin, a distribution with a `slotstream` entry point whose `slotstream_register_components` hook "
        "registers it (README, Plugins), install it (`pip install -e` of its folder) and train again"
    )


def check_clip_length(config: TrainConfig, registry: ComponentRegistry) -> None:
    """:func:`check_transition_trains` before the run's model exists, so that a refusal comes before the data is read.

    Clips of :data:`MIN_TRANSITION_CLIP` frames or more pass at once; shorter ones build ``config``'s model on the
    CPU (without the files its components start from), freeze it as ``config.train_only`` says and check it.

    Raises:
        ValueError: as :func:`check_transition_trains`.
        RegistryError: a component of ``config.model`` is not registered.
    """
    if config.data.clip_length >= MIN_TRANSITION_CLIP:
        return
    model = VideoSlotModel(**_without_initial_weights(config.model, registry), registry=registry)
    if config.train_only is not None:
        freeze_all_but(model, config.train_only)
    check_transition_trains(config, model)


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
