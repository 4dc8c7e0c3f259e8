"""A property probe of one model, end to end (:func:`probe_model`): its slots matched to the objects of
synthetic videos, a probe trained on the train-split videos' pairs and scored on the validation videos' pairs,
and the probe saved with its scores and their chart."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from downstream.head_folder import load_head, model_label, save_head
from downstream.probes.chart import save_probe_chart
from downstream.probes.config import ProbeConfig
from downstream.probes.pairs import MatchedSlots, collect_pairs
from downstream.probes.scores import PropertyScore, probe_scores
from downstream.probes.training import fit_probe
from downstream.property_probe import PropertyProbe
from plugins import VideoSlotModel
from plugins.files import write_atomically
from service.engine import model_version
from training.datasets.synthetic.levels import get_level
from training.datasets.synthetic_dataset import SyntheticDataset
from training.evaluation import MaskSource

SCORES_FILE = "scores.json"
"""The held-out scores :func:`probe_model` writes beside the probe."""
SCORES_CHART = "scores.png"
"""Their chart."""


@dataclass(frozen=True)
class ProbeResult:
    """What :func:`probe_model` measured and saved.

    Attributes:
        folder: where the probe was saved (:func:`load_probe` reads it).
        train: the slots matched in the train-split videos, which the probe was trained on.
        test: those matched in the validation videos, which it was scored on.
        scores: each property's held-out score beside the guess without slots.
        final_loss: the probe's training loss at its last step.
        seconds: the whole run's time, running the model included.
    """

    folder: Path
    train: MatchedSlots
    test: MatchedSlots
    scores: list[PropertyScore]
    final_loss: float
    seconds: float


def probe_model(
    model_dir: Path,
    level: str,
    out: Path,
    config: ProbeConfig,
    *,
    mask_source: MaskSource = "decoder",
    progress: bool = True,
) -> ProbeResult:
    """Probe the model saved in ``model_dir`` on the synthetic level ``level`` and save the probe in ``out``.

    Raises:
        ValueError: an unknown level, a model that cannot be loaded, or no matched slot to train or score on.
        OSError: ``out`` cannot be written.
    """
    started = time.perf_counter()
    properties = config.chosen()
    chosen_level = get_level(level)
    model = VideoSlotModel.from_pretrained(model_dir)
    size = model.image_size
    train_videos = SyntheticDataset(chosen_level, "train", None, size, config.seed, num_videos=config.train_videos)
    test_videos = SyntheticDataset(chosen_level, "val", None, size, num_videos=config.test_videos)
    train, test = (
        collect_pairs(
            model, videos, properties, min_iou=config.min_iou, mask_source=mask_source, progress=progress, desc=desc
        )
        for videos, desc in ((train_videos, "match (train)"), (test_videos, "match (test)"))
    )
    probe, final_loss = fit_probe(train, properties, config, progress)
    scores = probe_scores(probe, properties, train, test)
    record = {
        "model": str(model_dir.resolve()),
        "model_version": model_version(model_dir),
        "data": f"synthetic:{chosen_level.name}",
        "mask_source": mask_source,
        "probe": config.to_json(),
        "classes": {prop.name: list(prop.classes) for prop in properties if prop.categorical},
        "pairs": {"train": _pair_counts(train), "test": _pair_counts(test)},
        "final_loss": final_loss,
    }
    save_head(probe, out, record)
    text = json.dumps({**record, "scores": [score.to_json() for score in scores]}, indent=2) + "\n"
    write_atomically(out / SCORES_FILE, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    subtitle = f"{len(test)} held-out slots of {config.test_videos} videos, {chosen_level.name} level"
    save_probe_chart(scores, out / SCORES_CHART, f"property probe of {model_label(model_dir)}", subtitle)
    return ProbeResult(out, train, test, scores, final_loss, time.perf_counter() - started)


def load_probe(folder: Path) -> tuple[PropertyProbe, dict[str, Any]]:
    """The probe saved in ``folder`` by :func:`probe_model` (in eval mode) and its ``config.json`` (which also
    records the model it probes, the classes of each categorical property and the pair counts).

    Raises:
        ValueError: the folder holds no property probe, or weights that do not fit its config.
    """
    return load_head(folder, PropertyProbe, "a property probe")


def _pair_counts(pairs: MatchedSlots) -> dict[str, float]:
    return {
        "pairs": len(pairs),
        "visible_objects": pairs.visible_objects,
        "matched_fraction": round(pairs.matched_fraction, 4),
        "mean_iou": round(float(pairs.ious.mean()), 4) if len(pairs) else 0.0,
    }


__all__ = ["SCORES_CHART", "SCORES_FILE", "ProbeResult", "load_probe", "probe_model"]
