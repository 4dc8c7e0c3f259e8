"""One optimisation step of a run and the checks around it: each loss's value against its contract, divergence
of the loss, and the training throughput between metric lines."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

from plugins.interfaces import ContractViolation, Loss
from training.checkpoint import list_checkpoints
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
    """
    run.model.set_training_progress(run.step / max(config.steps, 1))
    with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=run.scaler is not None):
        output = run.trained(frames)
        values = {name: loss(output, run.step / max(config.steps, 1)) for name, _, loss in run.losses}
        for name, _, loss in run.losses:
            _check_loss_value(run, name, loss, values[name])
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


def _check_loss_value(run: Run, name: str, loss: Loss, value: object) -> None:
    """Raise :class:`ContractViolation` unless ``value``, what the loss ``name`` returned, is a 0-dim tensor (its
    contract: a scalar; finite or not, which the divergence check judges), naming the loss, its class, its plugin
    and what it returned, instead of an autograd error about implicit gradients that names none of them."""
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        return
    cls = type(loss)
    returned = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
    raise ContractViolation(
        f"the loss {name!r} ({cls.__module__}.{cls.__qualname__}, registered by plugin "
        f"{run.loss_plugins.get(name, '?')!r}) returned {returned}; a loss must return a scalar tensor (shape ()), "
        "for example its mean over the batch"
    )


#: Under mixed precision, steps in a row with a non-finite loss after which a run counts as diverged (the
#: gradient scaler skips such steps, so the weights may stay finite while nothing is learned).
AMP_NON_FINITE_LIMIT = 10


def diverged(run: Run, group: ProcessGroup) -> bool:
    """After a step with a non-finite loss: whether to stop the run. Under mixed precision the gradient scaler
    skips such a step and lowers its scale, so only weights that are no longer finite, or
    :data:`AMP_NON_FINITE_LIMIT` such steps in a row, mean divergence; under ``torchrun`` the ranks would have to
    agree to stop together, so a rank never stops alone."""
    if group.distributed:
        return False
    if run.scaler is None or run.non_finite_losses >= AMP_NON_FINITE_LIMIT:
        return True
    return not all(bool(torch.isfinite(parameter).all()) for parameter in run.model.parameters())


def divergence_message(loss: float, step: int, run_dir: Path) -> str:
    """What to say when the loss stops being finite at ``step``: ``--resume`` would replay the same steps (and
    refuses another ``--lr``), so the way on is a lower rate, from scratch or from the newest checkpoint's weights."""
    saved = list_checkpoints(run_dir)
    restart = "start again with a lower --lr (in another --out, or delete this one)"
    if saved:
        restart += (
            f", or continue from the newest checkpoint's weights with --init-from {saved[-1]} and a lower --lr in "
            "another --out"
        )
    return (
        f"the loss is {loss} at step {step}: training diverged, and no checkpoint of it was written. A --resume "
        f"would repeat the same steps; {restart}"
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
