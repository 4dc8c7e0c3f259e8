"""Slots matched to the objects they hold, frame by frame, with each object's properties: a probe's data.

In each frame, every slot's argmax mask (the model's masks upsampled to the ground truth's size, as the
evaluation scores them) is compared with every visible object's pixels; the Hungarian algorithm pairs slots and
objects for the largest total IoU, and a pair counts when its IoU exceeds ``min_iou`` (0.1, the Genera1Z
recognition probe's threshold, methods.md section 12.1; the background is never matched). A slot that holds no
object well enough, and an object no slot holds, give no pair: how many objects were matched is reported beside
the probe's scores.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torch.utils.data import Dataset

from downstream.probes.properties import ObjectProperty
from plugins import VideoSlotModel
from training.datasets import VideoClip
from training.evaluation import MaskSource, model_outputs, predicted_masks
from training.metrics import BACKGROUND_ID
from training.metrics.masks import upsample_to_labels

MIN_IOU = 0.1
"""IoU a slot's mask must exceed with an object's pixels for the two to be a pair."""


@dataclass(frozen=True)
class MatchedSlots:
    """Slots paired with the objects they hold, one row per (frame, object) pair.

    Attributes:
        slots: ``[N, D]`` the matched slots.
        targets: property name -> ``[N]`` class indices (int64) of a categorical property, ``[N, k]`` values
            (float32) of a continuous one.
        ious: ``[N]`` each pair's IoU.
        video_ids: ``[N]`` the index of the pair's video in the data it came from.
        visible_objects: objects visible in the frames looked at, counted once per frame: the pairs there could
            have been.
    """

    slots: Tensor
    targets: dict[str, Tensor]
    ious: Tensor
    video_ids: Tensor
    visible_objects: int

    def __len__(self) -> int:
        return int(self.slots.shape[0])

    @property
    def matched_fraction(self) -> float:
        """The share of the visible objects that got a slot (0 when none was visible)."""
        return len(self) / self.visible_objects if self.visible_objects else 0.0


def match_frame(labels: Tensor, ids: Tensor, min_iou: float = MIN_IOU) -> list[tuple[int, int, float]]:
    """The slot-object pairs of one frame: ``(slot, object id, IoU)`` for each pair the Hungarian algorithm makes
    between the slots of ``labels`` ``[H, W]`` (each pixel's slot) and the objects of ``ids`` ``[H, W]`` (0 the
    background, negative ids void and left out), keeping those above ``min_iou``."""
    scored = ids >= 0
    slot_of, object_of = labels[scored], ids[scored]  # [P], [P]
    objects = [int(v) for v in torch.unique(object_of).tolist() if v != BACKGROUND_ID]
    if not objects:
        return []
    slots = int(labels.max()) + 1
    slot_hot = torch.nn.functional.one_hot(slot_of, slots).T.float()  # [P] -> [K, P]
    object_hot = torch.stack([object_of == obj for obj in objects]).float()  # [M, P]
    inter = slot_hot @ object_hot.T  # [K, M]
    union = slot_hot.sum(1, keepdim=True) + object_hot.sum(1)[None, :] - inter  # [K, 1] + [1, M] - [K, M]
    iou = (inter / union.clamp_min(1)).numpy()
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return [(int(r), objects[c], float(iou[r, c])) for r, c in zip(rows, cols, strict=True) if iou[r, c] > min_iou]


def collect_pairs(
    model: VideoSlotModel,
    dataset: Dataset[VideoClip],
    properties: tuple[ObjectProperty, ...],
    *,
    min_iou: float = MIN_IOU,
    mask_source: MaskSource = "decoder",
    progress: bool = False,
    desc: str = "match",
) -> MatchedSlots:
    """Run ``model`` over every video of ``dataset`` and pair its slots with the objects, frame by frame.

    Raises:
        ValueError: a video has no masks or no synthetic metadata (the message names it).
    """
    slots: list[Tensor] = []
    values: dict[str, list[object]] = {prop.name: [] for prop in properties}
    ious: list[float] = []
    video_ids: list[int] = []
    visible = 0
    with closing(model_outputs(model, dataset, progress=progress, desc=desc)) as outputs:
        for video, (batch, output) in enumerate(outputs):
            ids, metadata = batch.masks, batch.metadata[0]
            if ids is None or metadata is None:
                raise ValueError(
                    f"{batch.names[0]}: a probe needs masks and synthetic metadata (synthetic:<level> data)"
                )
            masks = predicted_masks(output, mask_source)[0].float()  # [T, K, h, w]
            labels = upsample_to_labels(masks, (ids.shape[-2], ids.shape[-1]))  # [T, H, W]
            info = {obj.object_id: obj for obj in metadata.objects}
            for t in range(labels.shape[0]):
                frame_ids = ids[0, t]  # [H, W]
                visible += sum(1 for v in torch.unique(frame_ids).tolist() if v > BACKGROUND_ID)
                states = {state.object_id: state for state in metadata.frames[batch.starts[0] + t]}
                for slot, object_id, iou in match_frame(labels[t], frame_ids, min_iou):
                    slots.append(output.slots[0, t, slot].float())
                    for prop in properties:
                        values[prop.name].append(prop.read(info[object_id], states[object_id]))
                    ious.append(iou)
                    video_ids.append(video)
    width = int(model.slot_dim)
    return MatchedSlots(
        slots=torch.stack(slots) if slots else torch.zeros(0, width),
        targets={prop.name: _target_tensor(prop, values[prop.name]) for prop in properties},
        ious=torch.tensor(ious, dtype=torch.float32),
        video_ids=torch.tensor(video_ids, dtype=torch.int64),
        visible_objects=visible,
    )


def _target_tensor(prop: ObjectProperty, values: list[object]) -> Tensor:
    """A property's values as the probe's targets: class indices ``[N]``, or ``[N, k]`` floats."""
    if prop.categorical:
        index = {name: i for i, name in enumerate(prop.classes)}
        return torch.tensor([index[str(value)] for value in values], dtype=torch.int64)
    return torch.from_numpy(np.asarray(values, dtype=np.float32).reshape(len(values), prop.width))


__all__ = ["MIN_IOU", "MatchedSlots", "collect_pairs", "match_frame"]
