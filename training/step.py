"""One optimisation step of a run and the checks around it: each loss's value against its contract, divergence
of the loss or the gradient, and the training throughput between metric lines."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from plugins.interfaces import ContractViolation, Loss
from training.checkpoint import finite_weights, list_checkpoints, newest_finite_checkpoint
from training.config import TrainConfig
from training.diagnostics import slot_similarity
from training.distributed import ProcessGroup
from training.gradients import clip_gradients
from training.run_state import Run


def optimisation_step(config: TrainConfig, run: Run, frames: torch.Tensor, device: str) -> dict[str, float]:
    """One optimisation step of ``run`` on ``frames`` (``[B, T, 3, H, W]``, on ``device``): forward, weighted
    losses, backward, gradient clipping, optimiser and schedule step. Returns what the step logs: the total
    ``loss``, the ``lr`` it used, ``grad_norm`` before clipping, each loss by name and ``slot_similarity``.

    Raises:
        ContractViolation: a loss did not return a scalar tensor.

    Warns:
        LossWithoutGradientWarning: a loss term of non-zero weight returned a value no trainable weight reaches
            (:func:`_check_loss_value`).
    """
    run.model.set_training_progress(run.step / max(config.steps, 1))
    with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=run.scaler is not None):
        output = run.trained(frames)
        values = {name: loss(output, run.step / max(config.steps, 1)) for name, _, loss in run.losses}
        for name, weight, loss in run.losses:
            _check_loss_value(run, name, weight, loss, values[name])
        total = sum((weight * values[name] for name, weight, _ in run.losses), torch.zeros((), device=device))
    run.optimizer.zero_grad(set_to_none=True)
    lr = run.optimizer.param_groups[0]["lr"]  # the rate this step uses (the scheduler moves on below)
    if run.scaler is not None:
        run.scaler.scale(total).backward()
        run.scaler.unscale_(run.optimizer)
    else:
        total.backward()
    grad_norm = clip_gradients(run.model, config.optim.grad_clip, config.optim.grad_clip_scope)
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    with warnings.catch_warnings():
        # The gradient scaler skips the optimizer step while it lowers its scale after inf/NaN gradients (the
        # first steps of a run); the schedule still follows the step count, so --resume and the logged lr agree.
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
        run.scheduler.step()
    return {
        "loss": total.item(),
        "lr": float(lr),
        "grad_norm": grad_norm.item(),
        **{k: v.item() for k, v in values.items()},
        "slot_similarity": slot_similarity(output.steps[0].slots).item(),
    }


class LossWithoutGradientWarning(UserWarning):
    """A loss term returned a value that no trainable weight reaches, so it trains nothing (see
    :func:`_check_loss_value`)."""


def _check_loss_value(run: Run, name: str, weight: float, loss: Loss, value: object) -> None:
    """Check ``value``, what the loss ``name`` (at ``weight``) returned, against the loss contract, naming the loss,
    its class and its plugin.

    Raises :class:`ContractViolation` unless ``value`` is a 0-dim tensor (a scalar; finite or not, which the
    divergence check judges), instead of an autograd error about implicit gradients that names none of them.

    Warns (:class:`LossWithoutGradientWarning`, once per loss and run: :attr:`Run.losses_warned` keeps count)
    when gradients are enabled, ``weight`` is not 0 and ``value`` does not require grad: a value made with
    ``.item()`` or ``float()``, computed under ``torch.no_grad()`` or only from detached tensors trains nothing.
    A warning, not an error: a term can legitimately reach only components that ``train_only`` freezes (the tiny
    experiment's ``preheat_mse`` with ``train_only=["decoder"]``), and a term with nothing to score on some clip is
    better returned as a zero still on the graph (``output.slots.sum() * 0.0``, as the built-in losses do) than
    made to stop a run. A term logged for its value only belongs at weight 0, which is not warned about.
    """
    cls = type(loss)
    plugin = run.loss_plugins.get(name, "?")
    who = f"the loss {name!r} ({cls.__module__}.{cls.__qualname__}, registered by plugin {plugin!r})"
    if not (isinstance(value, torch.Tensor) and value.ndim == 0):
        returned = (
            f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        )
        raise ContractViolation(
            f"{who} returned {returned}; a loss must return a scalar tensor (shape ()), for example its mean over the "
            "batch"
        )
    if weight != 0 and torch.is_grad_enabled() and not value.requires_grad and name not in run.losses_warned:
        run.losses_warned.add(name)
        warnings.warn(
            f"{who} returned a value that no trainable weight reaches (it does not require grad), so at weight "
            f"{weight} it trains nothing: a value made with .item() or float(), computed under torch.no_grad() or "
            "only from detached tensors is a constant to the optimiser. Compute it with tensor operations on the "
            "model's outputs; a term with nothing to score on a clip can return output.slots.sum() * 0.0, and one "
            "that reaches only components train_only freezes can be left out",
            LossWithoutGradientWarning,
            stacklevel=2,  # optimisation_step's line: one warning per loss there
        )


#: Under mixed precision, steps in a row with a non-finite loss after which a run counts as diverged (the
#: gradient scaler skips such steps, so the weights may stay finite while nothing is learned).
AMP_NON_FINITE_LIMIT = 10


@dataclass(frozen=True)
class NonFinite:
    """What was not finite in a step, for the message that stops the run (:func:`divergence_message`).

    Attributes:
        what: the value, as a clause: ``"the loss is nan"``.
        detail: what explains it (the loss terms that are not finite, with their weights), or ``""``.
    """

    what: str
    detail: str = ""


def non_finite(terms: Mapping[str, float], losses: Sequence[tuple[str, float, object]]) -> NonFinite | None:
    """What was not finite in a step that logged ``terms`` (:func:`optimisation_step`): the loss, with the terms of
    ``losses`` (name, weight, loss) whose weighted value is not finite, or else the gradient norm (clipping would
    spread it to every weight); None when both are finite."""
    loss, norm = terms["loss"], terms["grad_norm"]
    if math.isfinite(loss):
        return (
            None if math.isfinite(norm) else NonFinite(f"the gradient norm is {norm}", f"the loss, {loss}, is finite")
        )
    culprits = [
        f"{name} = {terms[name]} at weight {weight}"
        for name, weight, _ in losses
        if name in terms and not math.isfinite(weight * terms[name])
    ]
    detail = (
        f"not finite: {', '.join(culprits)}" if culprits else "each weighted loss term is finite, their sum is not"
    )
    return NonFinite(f"the loss is {loss}", detail)


def diverged(run: Run, group: ProcessGroup) -> bool:
    """After a step whose loss or gradient norm was not finite (:func:`non_finite`): whether to stop the run.
    Without mixed precision that step's update made the weights non-finite, so it does. Under mixed precision
    the gradient scaler skips a step whose gradients are not finite and lowers its scale (the first steps of a
    run), so only weights that are no longer finite, or :data:`AMP_NON_FINITE_LIMIT` steps in a row with a
    non-finite loss, mean divergence; under ``torchrun`` the ranks would have to agree to stop together, so a rank
    never stops alone (a checkpoint of non-finite weights is refused instead:
    :class:`training.checkpoint.NonFiniteWeights`)."""
    if group.distributed:
        return False
    if run.scaler is None or run.non_finite_losses >= AMP_NON_FINITE_LIMIT:
        return True
    return not finite_weights(run.model)


def divergence_message(
    problem: NonFinite, step: int, run_dir: Path, *, updated: bool = True, parameters: Collection[str] | None = None
) -> str:
    """What to say when ``problem`` (:func:`non_finite`) stops the run at ``step``.

    After an update (``updated``), ``--resume`` would replay the same steps (and refuses another ``--lr``), so the
    way on is a lower rate, from scratch or from the weights of the newest checkpoint whose ``parameters`` (names
    of the model's; every tensor when None) are finite (:func:`training.checkpoint.newest_finite_checkpoint`; newer
    ones are named as unusable). Before any update
    (the first step of a run) the learning rate is not the cause: the message points to the losses, the data and
    the starting weights instead."""
    detail = f" ({problem.detail})" if problem.detail else ""
    if not updated:
        return (
            f"{problem.what} at step {step}{detail}, before any update of the weights, so not because of the learning "
            "rate: check the losses of the configuration (their weights and arguments), the training data and, for a "
            "warm-started run, the model it starts from"
        )
    return (
        f"{problem.what} at step {step}: training diverged{detail}, and no checkpoint of it was written. A --resume "
        f"would repeat the same steps; {_way_on(run_dir, parameters)}"
    )


def _way_on(run_dir: Path, parameters: Collection[str] | None) -> str:
    """How to go on from a diverged run in ``run_dir``: a lower ``--lr``, from scratch or from the weights of its
    newest checkpoint whose weights read and whose ``parameters`` are finite (the newer ones named as unusable)."""
    restart = "start again with a lower --lr (in another --out, or delete this one)"
    newest = newest_finite_checkpoint(run_dir, parameters)
    if newest is None:
        return restart
    saved = list_checkpoints(run_dir)
    later = [path.name for path in saved[saved.index(newest) + 1 :]] if newest in saved else []
    unusable = f" ({', '.join(later)} cannot be read or holds weights that are not finite)" if later else ""
    return (
        f"{restart}, or continue from the newest checkpoint's weights with --init-from {newest} and a lower --lr in "
        f"another --out{unusable}"
    )


class Throughput:
    """Training clips per second over the steps since the last training line, all processes together, leaving
    out the time evaluations and checkpoints took in between (:attr:`paused_s`).

    Args:
        clips_per_step: clips one step trains on, all processes together (batch size x processes).
    """

    def __init__(self, clips_per_step: int) -> None:
        self.clips_per_step = clips_per_step
        self.steps = 0
        self.paused_s = 0.0
        self.since = time.perf_counter()

    def clips_per_s(self) -> float:
        """The rate over the steps counted since the last call (or since construction), then start again."""
        now = time.perf_counter()
        seconds = max(now - self.since - self.paused_s, 1e-9)
        rate = self.clips_per_step * self.steps / seconds
        self.steps, self.paused_s, self.since = 0, 0.0, now
        return rate
