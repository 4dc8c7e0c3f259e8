"""Keep the best model of a run: ``best/`` holds the weights that scored highest at a periodic evaluation (or, for
a run whose evaluation videos have no masks, that had the lowest held-out loss: :func:`update_best_by_loss`).

Slot models trained from scratch do not improve monotonically: a run can reach its best grouping early and
then drift (slots merging small objects into the background, or swapping identities over time). The run
directory therefore keeps, next to the rolling checkpoints and the final ``model/``, the model of the
evaluation with the highest selection score, in the ``save_pretrained`` format plus ``selection.json`` (step,
score, selection metrics and all scores). It is replaced atomically, like a checkpoint, so a killed run never
leaves a half-written best model, and a resumed run reads the score to beat back from ``selection.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugins import VideoSlotModel
from plugins.model_files import RUN_BEST_MODEL_DIR
from training.checkpoint import WRITE_ERRORS, cannot_write, make_staging_dir
from training.config import DEFAULT_SELECT_METRICS
from training.loss_evaluation import LOSS_METRIC, HeldOutLosses
from training.metrics import DiscoveryScores

BEST_MODEL_DIR = RUN_BEST_MODEL_DIR
SELECTION_FILE = "selection.json"
_PREVIOUS_BEST_DIR = ".previous-best"
_STAGING_PREFIX = ".best-"


@dataclass(frozen=True)
class Selection:
    """Why the best model is the best.

    Attributes:
        step: the optimisation step of the evaluation.
        score: the selection score (the sum of ``metrics``; higher is better), or, when ``lower_is_better``, the
            held-out loss ``val_loss``.
        metrics: names of the :class:`DiscoveryScores` fields that were summed (``("val_loss",)`` when
            ``lower_is_better``).
        scores: every score of that evaluation (its held-out losses when ``lower_is_better``:
            :meth:`training.loss_evaluation.HeldOutLosses.to_dict`).
        reason: why ``metrics`` differ from the configured ones (:func:`run_selection_metrics`,
            :data:`LOSS_SELECTION_REASON`), else None.
        elapsed_s: the seconds the run had trained when it reached ``step`` (over all its invocations, as
            ``metrics.jsonl`` counts them), or None when ``selection.json`` does not record them.
        lower_is_better: the model was chosen by the lowest held-out loss (:func:`update_best_by_loss`), not by
            the highest score.
    """

    step: int
    score: float
    metrics: tuple[str, ...]
    scores: dict[str, Any]
    reason: str | None = None
    elapsed_s: float | None = None
    lower_is_better: bool = False


def check_metrics(metrics: tuple[str, ...] | list[str]) -> None:
    """Fail early, with the valid names, when a selection metric is not a score field.

    Raises:
        ValueError: ``metrics`` is empty or names something that is not a float field of
            :class:`DiscoveryScores`.
    """
    valid = [field.name for field in dataclasses.fields(DiscoveryScores) if field.type in (float, "float")]
    unknown = [name for name in metrics if name not in valid]
    if unknown or not metrics:
        raise ValueError(f"selection metrics {list(metrics)} must be one or more of {valid}")


_SINGLE_OBJECT_DROPPED = "video_fg_ari"
"""The metric a run with single-object evaluation videos leaves out of the default selection."""


def run_selection_metrics(configured: Sequence[str], most_objects: int) -> tuple[tuple[str, ...], str | None]:
    """The metrics that choose a run's best model, and why they differ from ``configured`` (None when they do not).

    With single-object ground truth (no evaluation video has more than one object: ``most_objects`` at most 1),
    FG-ARI is 1 whenever the object's pixels share one slot, so a collapsed model that puts every pixel in one
    slot scores it fully and the default FG-ARI + mBO prefers it to a model that segments the object. There the
    default (:data:`training.config.DEFAULT_SELECT_METRICS`) loses ``video_fg_ari``: the run selects by
    ``video_mbo`` alone. Metrics a configuration sets otherwise are kept as they are.

    Args:
        configured: the configuration's ``select_metrics``.
        most_objects: the most ground-truth objects of any evaluation video
            (:attr:`training.run_data.ValidationData.most_objects`).
    """
    metrics = tuple(configured)
    if most_objects > 1 or metrics != DEFAULT_SELECT_METRICS:
        return metrics, None
    kept = tuple(name for name in metrics if name != _SINGLE_OBJECT_DROPPED)
    reason = (
        f"no evaluation video has more than one object, so FG-ARI (1 whenever the object lies in one slot, also "
        f"for a model with every pixel in one slot) is left out: best/ is chosen by {' + '.join(kept)}"
    )
    return kept, reason


LOSS_SELECTION_REASON = (
    "the evaluation videos have no labels, so the model cannot be scored on them: best/ is chosen by the lowest "
    "held-out loss (val_loss: the run's training losses, weighted as in training but without the self-distillation "
    "terms preheat_mse and attention_distillation, on those videos)"
)
"""Why a run whose evaluation videos have no masks selects by ``val_loss`` (``selection.json``'s ``reason``)."""


def selection_score(scores: DiscoveryScores, metrics: tuple[str, ...]) -> float:
    """The sum of the named score fields (see :func:`check_metrics`); NaN (no valid sample) counts as 0."""
    return _summed({name: getattr(scores, name) for name in metrics}, metrics)


def _summed(scores: Mapping[str, Any], metrics: tuple[str, ...]) -> float:
    """The sum of ``scores[name]`` over ``metrics``; NaN or None (no valid sample, as ``selection.json`` records
    it) counts as 0."""
    values = [float("nan") if scores[name] is None else float(scores[name]) for name in metrics]
    return sum(0.0 if math.isnan(value) else value for value in values)


def read_selection(run_dir: Path) -> Selection | None:
    """The selection record of the run's best model, or None when there is none yet.

    Raises:
        ValueError: the record cannot be read (damaged or edited), naming it and what to do.
    """
    final, previous = run_dir / BEST_MODEL_DIR, run_dir / _PREVIOUS_BEST_DIR
    if not final.exists() and (previous / SELECTION_FILE).is_file():  # killed between the two renames
        os.replace(previous, final)
    path = final / SELECTION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        elapsed = data.get("elapsed_s")
        return Selection(
            int(data["step"]),
            float(data["score"]),
            tuple(data["metrics"]),
            dict(data["scores"]),
            data.get("reason"),
            None if elapsed is None else float(elapsed),
            bool(data.get("lower_is_better", False)),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # JSONDecodeError and UnicodeDecodeError too
        raise ValueError(
            f"{path} is not a readable record of the best model ({type(error).__name__}: {error}): restore it, or "
            f"delete {final} (a resumed run selects its best model again at its next evaluation)"
        ) from error


def clear_best(run_dir: Path) -> None:
    """Remove a best model left in ``run_dir`` by an earlier run (a new run must not inherit its selection)."""
    for name in (BEST_MODEL_DIR, _PREVIOUS_BEST_DIR):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    _remove_leftover_staging(run_dir)


def _remove_leftover_staging(run_dir: Path) -> None:
    """Staging folders of a run killed while it wrote its best model."""
    for leftover in run_dir.glob(f"{_STAGING_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)


def update_best(
    run_dir: Path,
    model: VideoSlotModel,
    step: int,
    scores: DiscoveryScores,
    metrics: tuple[str, ...],
    reason: str | None = None,
    elapsed_s: float | None = None,
) -> Selection | None:
    """Save ``model`` as the run's best when its score beats the recorded one (ties keep the earlier model).

    A recorded best chosen by other metrics (a run resumed under other selection rules) is scored again by
    ``metrics`` from the scores it records, so both are compared by the same sum. ``reason`` (why ``metrics``
    are not the configured ones) is recorded in ``selection.json`` with them, and so is ``elapsed_s`` (the
    seconds the run had trained to reach ``step``: ``Run.elapsed_s()``), which model cards report as its wall time.

    Returns:
        The new selection when the model was saved, else None.

    Raises:
        OSError: ``best/`` cannot be written (a full disk: the message names the folder); the previous best model
            stays, and no staging folder is left.
    """
    score = selection_score(scores, metrics)
    current = read_selection(run_dir)
    # A best chosen by the lowest held-out loss (a run whose evaluation videos had no masks then) has no score to
    # compare with: a scored evaluation replaces it.
    if current is not None and not current.lower_is_better and score <= _current_score(current, metrics):
        return None
    return _save_best(run_dir, model, Selection(step, score, metrics, scores.to_dict(), reason, elapsed_s))


def update_best_by_loss(
    run_dir: Path,
    model: VideoSlotModel,
    step: int,
    losses: HeldOutLosses,
    reason: str | None = LOSS_SELECTION_REASON,
    elapsed_s: float | None = None,
) -> Selection | None:
    """Save ``model`` as the run's best when its held-out loss (``losses.total``) is lower than the recorded one
    (ties keep the earlier model); a loss that is not finite is never saved. Totals are compared only between
    evaluations that computed the same terms: one that could not compute a term the recorded best computed (a
    loss that failed once) never replaces it, and one that computed more terms always does (the recorded total
    left a term out). ``selection.json`` records
    ``metrics`` ``["val_loss"]``, ``score`` the loss, ``lower_is_better`` true, the losses as ``scores``,
    ``reason`` and ``elapsed_s`` (as :func:`update_best`). A recorded best chosen by scores (a run whose evaluation
    videos had masks then) cannot be compared with a loss and is replaced. A resumed run reads the loss to beat
    back from ``selection.json``.

    Returns:
        The new selection when the model was saved, else None.

    Raises:
        OSError: as :func:`update_best`.
    """
    loss = losses.total
    if not math.isfinite(loss):
        return None
    current = read_selection(run_dir)
    if current is not None and current.lower_is_better:
        ours, theirs = _computed_terms(losses.to_dict()), _computed_terms(current.scores)
        if ours == theirs and not loss < current.score:
            return None
        if ours != theirs and not ours > theirs:  # a term the best had is missing here: not comparable, kept
            return None
    selection = Selection(step, loss, (LOSS_METRIC,), losses.to_dict(), reason, elapsed_s, lower_is_better=True)
    return _save_best(run_dir, model, selection)


def _computed_terms(scores: Mapping[str, Any]) -> frozenset[str]:
    """The loss terms an evaluation by held-out losses computed (``val_<term>`` with a value; ``val_loss`` aside)."""
    return frozenset(
        name for name, value in scores.items() if name.startswith("val_") and name != LOSS_METRIC and value is not None
    )


def _save_best(run_dir: Path, model: VideoSlotModel, selection: Selection) -> Selection:
    """Write ``model`` as ``best/`` with ``selection`` as its ``selection.json`` (``reason``, ``elapsed_s`` and
    ``lower_is_better`` only where set).

    Raises:
        OSError: as :func:`update_best`.
    """
    record: dict[str, Any] = {
        "step": selection.step,
        "score": selection.score,
        "metrics": list(selection.metrics),
        "scores": selection.scores,
    }
    if selection.reason is not None:
        record["reason"] = selection.reason
    if selection.elapsed_s is not None:
        record["elapsed_s"] = selection.elapsed_s
    if selection.lower_is_better:
        record["lower_is_better"] = True
    try:
        _replace_best(run_dir, model, record)
    except WRITE_ERRORS as error:
        raise cannot_write("the best model", run_dir / BEST_MODEL_DIR, error) from error
    return selection


def _replace_best(run_dir: Path, model: VideoSlotModel, record: dict[str, Any]) -> None:
    """Write ``model`` and its ``selection.json`` (``record``) into a staging folder, then rename it to ``best/``,
    the previous best moved aside first and deleted last (:func:`read_selection` puts it back after a kill in
    between). The staging folder is removed when a write fails: the previous best stays as it was."""
    _remove_leftover_staging(run_dir)
    staging = make_staging_dir(run_dir, prefix=_STAGING_PREFIX)
    try:
        model.save_pretrained(staging)
        (staging / SELECTION_FILE).write_text(json.dumps(record, indent=2) + "\n")
        final, doomed = run_dir / BEST_MODEL_DIR, run_dir / _PREVIOUS_BEST_DIR
        shutil.rmtree(doomed, ignore_errors=True)
        if final.exists():
            os.replace(final, doomed)
        os.replace(staging, final)
        shutil.rmtree(doomed, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _current_score(current: Selection, metrics: tuple[str, ...]) -> float:
    """The recorded best's score by ``metrics``: its own when it was chosen by them, else summed again from the
    scores it records (its own score when those lack one of ``metrics``)."""
    if current.metrics == metrics or not all(name in current.scores for name in metrics):
        return current.score
    return _summed(current.scores, metrics)
