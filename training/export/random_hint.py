"""The fix to name when an exported graph holds a random operator: the model's setting that draws noise at
inference (:func:`plugins.random_settings.random_settings`), where its config has one.

A random operator rules the graph out for every runtime, not TensorRT alone (served steps must be pure functions
of their inputs: stream hand-off and resume re-run a stream's frames and must get its slots again), so the export
says what to change instead of suggesting ``--onnxruntime-only``.
"""

from __future__ import annotations

from plugins import VideoSlotModel
from plugins.random_settings import random_settings
from training.export.operators import RANDOM_OPS, OperatorReport


def random_operator_hint(model: VideoSlotModel, report: OperatorReport) -> str:
    """The line to add to the refusal of a graph of ``model`` with a random operator (starting ``"\\n"``); ``""``
    when ``report`` lists none."""
    if not RANDOM_OPS.intersection(report.operators):
        return ""
    settings = random_settings(model.config)
    if not settings:
        return (
            "\nA component draws random numbers in eval mode: make it deterministic at inference (a noise sample kept "
            'as a buffer, as gaussian_shared\'s eval_noise "fixed" does) and export again'
        )
    causes = " and ".join(setting.cause for setting in settings)
    remedies = " and ".join(setting.remedy for setting in settings)
    return (
        f"\n{causes[0].upper()}{causes[1:]}, which draws fresh noise at inference: {remedies} (a noise sample the "
        "weights already hold) and export again; no runtime serves a random step"
    )
