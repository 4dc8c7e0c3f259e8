"""How well a trained probe reads each property out of slots it was not trained on, beside what guessing
without the slots achieves: the training pairs' most common class for a categorical property, their mean for a
continuous one."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from downstream.probes.pairs import MatchedSlots
from downstream.probes.properties import ObjectProperty
from downstream.property_probe import PropertyProbe


@dataclass(frozen=True)
class PropertyScore:
    """One property's score on the held-out pairs.

    Attributes:
        name: the property.
        kind: ``categorical`` or ``continuous``.
        score: accuracy (categorical), or R² (continuous: 1 - residual / total sum of squares per value, averaged
            over the property's values).
        baseline: the same score of the guess without slots: the most common training class's accuracy, or the
            training mean's R² (about 0; below 0 where the held-out mean differs).
        mse: the mean squared error per value (continuous; ``None`` for categorical).
        baseline_mse: the training mean's (continuous; ``None`` for categorical).
    """

    name: str
    kind: Literal["categorical", "continuous"]
    score: float
    baseline: float
    mse: float | None = None
    baseline_mse: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The score as a JSON object."""
        return asdict(self)


def probe_scores(
    probe: PropertyProbe, properties: tuple[ObjectProperty, ...], train: MatchedSlots, test: MatchedSlots
) -> list[PropertyScore]:
    """Score ``probe`` on the ``test`` pairs, each property beside its guess from the ``train`` pairs.

    Raises:
        ValueError: there are no test pairs, or no training pairs to make the guesses from.
    """
    if not len(test) or not len(train):
        raise ValueError("scoring a probe needs held-out pairs and training pairs")
    with torch.no_grad():
        predicted = probe.split(probe(test.slots))
    scores = []
    for prop in properties:
        truth, guess_from = test.targets[prop.name], train.targets[prop.name]
        if prop.categorical:
            majority = int(torch.bincount(guess_from, minlength=prop.width).argmax())
            accuracy = float((predicted[prop.name].argmax(dim=-1) == truth).float().mean())
            scores.append(PropertyScore(prop.name, "categorical", accuracy, float((truth == majority).float().mean())))
        else:
            mean = guess_from.mean(dim=0, keepdim=True).expand_as(truth)  # [1, k] -> [N, k]
            scores.append(
                PropertyScore(
                    prop.name,
                    "continuous",
                    r_squared(predicted[prop.name], truth),
                    r_squared(mean, truth),
                    float((predicted[prop.name] - truth).square().mean()),
                    float((mean - truth).square().mean()),
                )
            )
    return scores


def r_squared(predicted: Tensor, truth: Tensor) -> float:
    """R² of ``predicted`` against ``truth`` (``[N, k]``): per value 1 - residual / total sum of squares around
    ``truth``'s mean, averaged over the values that vary (0 when none does)."""
    residual = (truth - predicted).square().sum(dim=0)  # [k]
    total = (truth - truth.mean(dim=0, keepdim=True)).square().sum(dim=0)  # [k]
    varies = total > 0
    if not bool(varies.any()):
        return 0.0
    return float((1 - residual[varies] / total[varies]).mean())


def format_scores(scores: list[PropertyScore]) -> str:
    """A text table: one line per property, its score beside the guess's."""
    lines = [f"{'property':>10}  {'measure':>8}  {'probe':>7}  {'guess':>7}  {'probe MSE':>10}  {'guess MSE':>10}"]
    for row in scores:
        measure = "accuracy" if row.kind == "categorical" else "R²"
        mse = f"{row.mse:>10.3g}  {row.baseline_mse:>10.3g}" if row.mse is not None else f"{'':>10}  {'':>10}"
        lines.append(f"{row.name:>10}  {measure:>8}  {row.score:>7.3f}  {row.baseline:>7.3f}  {mse}")
    return "\n".join(lines)


__all__ = ["PropertyScore", "format_scores", "probe_scores", "r_squared"]
