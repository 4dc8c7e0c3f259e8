"""Keep the best model of a run: ``best/`` holds the weights that scored highest at a periodic evaluation.

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
        score: the selection score (the sum of ``metrics``; higher is better).
        metrics: names of the :class:`DiscoveryScores` fields that were summed.
        scores: every score of that evaluation.
        reason: why ``metrics`` differ from the configured ones (:func:`run_selection_metrics`), else None.
        elapsed_s: the seconds the run had trained when it reached ``step`` (over all its invocations, as
            ``metrics.jsonl`` counts them), or None when ``selection.json`` does not record them.
    """

    step: int
    score: float
    metrics: tuple[str, ...]
    scores: dict[str, Any]
    reason: str | None = None
    elapsed_s: float | None = None


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


def selection_score(scores: DiscoveryScores, metrics: tuple[str, ...]) -> float:
    """The sum of the named score fields (see :func:`check_metrics`); NaN (no valid sample) counts as 0."""
    return _summed({name: getattr(scores, name) for name in metrics}, metrics)


def _summed(scores: Mapping[str, Any], metrics: tuple[str, ...]) -> float:
    """The sum of ``scores[name]`` over ``metrics``; NaN or None (no valid sample, as ``selection.json`` records
    it) counts as 0."""
    values = [float("nan") if scores[name] is None else float(scores[name]) for name in metrics]
    return sum(0.0 if math.isnan(value) else value for value in values)


def read_selection(run_dir: Path) -> Selection | None:
    """The selection record of the run's best model, or None when there is none yet."""
    final, previous = run_dir / BEST_MODEL_DIR, run_dir / _PREVIOUS_BEST_DIR
    if not final.exists() and (previous / SELECTION_FILE).is_file():  # killed between the two renames
        os.replace(previous, final)
    path = final / SELECTION_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    scores = dict(data["scores"])
    elapsed = data.get("elapsed_s")
    return Selection(
        int(data["step"]),
        float(data["score"]),
        tuple(data["metrics"]),
        scores,
        data.get("reason"),
        None if elapsed is None else float(elapsed),
    )


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
    if current is not None and score <= _current_score(current, metrics):
        return None
    selection = Selection(step, score, metrics, scores.to_dict(), reason, elapsed_s)
    record: dict[str, Any] = {"step": step, "score": score, "metrics": list(metrics), "scores": selection.scores}
    if reason is not None:
        record["reason"] = reason
    if elapsed_s is not None:
        record["elapsed_s"] = elapsed_s
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
