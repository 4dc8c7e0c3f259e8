"""Training a ``property_probe`` head on matched slots (:func:`fit_probe`): every read-out at once, full batch,
cross-entropy for the categorical properties and the mean squared error for the continuous ones.

Continuous targets are standardised for training (each value to mean 0 and variance 1 over the training pairs,
so that a velocity of a few hundredths weighs as much as a position), and the standardisation is folded into the
last layer afterwards: the trained head predicts values in the properties' own units.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from downstream.probes.config import ProbeConfig
from downstream.probes.pairs import MatchedSlots
from downstream.probes.properties import ObjectProperty
from downstream.property_probe import PropertyProbe


def fit_probe(
    pairs: MatchedSlots, properties: tuple[ObjectProperty, ...], config: ProbeConfig, progress: bool = True
) -> tuple[PropertyProbe, float]:
    """Train a probe of ``properties`` on ``pairs``; returns it (in eval mode) and the loss of its last step (before
    that step's update; continuous properties in standardised units).

    Raises:
        ValueError: there are no pairs (no slot held an object well enough).
    """
    if not len(pairs):
        raise ValueError("no slot was matched to an object, so there is nothing to train a probe on")
    torch.manual_seed(config.seed)
    probe = PropertyProbe(
        int(pairs.slots.shape[1]),
        categorical={prop.name: prop.width for prop in properties if prop.categorical},
        continuous={prop.name: prop.width for prop in properties if not prop.categorical},
    )
    scales = {prop.name: _standardisation(pairs.targets[prop.name]) for prop in properties if not prop.categorical}
    targets = {name: (pairs.targets[name] - mean) / std for name, (mean, std) in scales.items()} | {
        prop.name: pairs.targets[prop.name] for prop in properties if prop.categorical
    }
    optimiser = torch.optim.AdamW(probe.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    probe.train()
    loss = torch.zeros(())
    for _ in tqdm(range(config.steps), desc="probe", disable=not progress, leave=False):
        loss = _loss(probe, pairs.slots, targets)
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    for name, (mean, std) in scales.items():
        _unstandardise(probe.readouts[name], mean, std)
    return probe.eval(), float(loss.detach())


def _loss(probe: PropertyProbe, slots: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sum over properties of the cross-entropy (categorical) or the mean squared error (continuous)."""
    outputs = probe.split(probe(slots))
    loss = torch.zeros(())
    for name, output in outputs.items():
        if name in probe.categorical:
            loss = loss + F.cross_entropy(output, targets[name])
        else:
            loss = loss + F.mse_loss(output, targets[name])
    return loss


def _standardisation(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each column's mean and standard deviation over the rows of ``values`` ``[N, k]`` (1 where it is 0)."""
    mean = values.mean(dim=0)
    std = values.std(dim=0, unbiased=False)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def _unstandardise(readout: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Make ``readout`` (ending in a ``Linear``) predict ``y * std + mean`` where it predicted ``y``."""
    last = readout[-1] if isinstance(readout, nn.Sequential) else readout
    assert isinstance(last, nn.Linear)
    with torch.no_grad():
        last.weight.mul_(std[:, None])  # [k, D] * [k, 1]
        last.bias.mul_(std).add_(mean)


__all__ = ["fit_probe"]
