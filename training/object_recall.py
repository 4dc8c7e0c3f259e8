"""``python -m training.object_recall --model DIR --data synthetic:LEVEL``: which kinds of objects a model finds.

For every object of every validation video, its best overlap with a slot: the highest IoU between the object's
pixels over the whole video and any slot's argmax mask (video mode, the per-object term of mBO). Objects are
grouped by their synthetic metadata (size, texture, shape); an object counts as found when its best overlap
exceeds 0.5. The aggregate metrics say how well a model does; this says on what it fails.

It also counts slot switches, what a world model trained on the slots meets as identity changes: in each frame
an object is visible, the slot that holds most of its pixels; a switch is a change of that slot from one frame the
object is visible in to the next one it is visible in, across frames where it is hidden (as multi-object tracking
counts identity switches), and the rate is per 100 such steps.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from plugins.cli_help import command_description
from plugins.extras import require_extra
from plugins.files import user_path, user_path_text

if __name__ == "__main__":  # before the imports that need the extra: one line instead of a traceback
    require_extra("train", "python -m training.object_recall")

import torch
from torch import Tensor
from torch.utils.data import Dataset

from plugins import VideoSlotModel
from plugins.registry import RegistryError
from training.cli_checks import print_note, require_at_least, require_output_folder
from training.datasets import VideoClip
from training.datasets.errors import DatasetError
from training.datasets.selection import evaluation_videos
from training.environment import size_torch_threads_noted
from training.evaluation import MaskSource, add_mask_source_option, predicted_videos
from training.metrics import BACKGROUND_ID, contingency_table, iou_from_contingency, upsample_to_labels
from training.recall_chart import save_recall_chart

ATTRIBUTES: tuple[str, ...] = ("size", "texture", "shape")
"""Object attributes of the synthetic metadata that objects are grouped by."""

FOUND_IOU = 0.5
"""Best overlap above which an object counts as found."""


@dataclass(frozen=True)
class ObjectOverlap:
    """One ground-truth object, its best overlap with any slot over its video, and how often the slot holding
    most of it changed (``switches`` of ``transitions``: steps from a frame it is visible in to the next one)."""

    video: str
    object_id: int
    attributes: dict[str, str]
    best_iou: float
    switches: int = 0
    transitions: int = 0


@dataclass(frozen=True)
class GroupRecall:
    """Objects sharing one attribute value: how many, their mean best overlap and the fraction found."""

    attribute: str
    value: str
    objects: int
    mean_best_iou: float
    found: float
    switches_per_100: float = float("nan")
    """Slot switches per 100 steps of the group's objects from one visible frame to the next (NaN: no steps)."""

    @property
    def label(self) -> str:
        """``all`` for the row of every object, else ``attribute=value``."""
        return "all" if self.value == "all" else f"{self.attribute}={self.value}"


def best_overlap_per_object(labels: Tensor, ids: Tensor) -> dict[int, float]:
    """Best IoU of each object id of ``ids [T, H, W]`` with any label of ``labels [T, H, W]``, over the whole video."""
    # labels and ids [T, H, W] -> [1, T*H*W]
    table = contingency_table(labels.reshape(1, -1), ids.reshape(1, -1))  # one sample: the whole video
    best = iou_from_contingency(table)[0].amax(dim=1)  # [M] best IoU of each GT id
    return {
        object_id: float(best[row])
        for row, object_id in enumerate(table.gt_ids.tolist())
        if object_id != BACKGROUND_ID
    }


def slot_switches_per_object(labels: Tensor, ids: Tensor) -> dict[int, tuple[int, int]]:
    """``(switches, transitions)`` of each object id of ``ids [T, H, W]`` under the slot labels ``labels [T, H, W]``:
    per frame the slot holding most of the object's pixels (the lowest slot on a tie); ``transitions`` steps from
    one frame the object is visible in to the next (across frames where it is hidden), ``switches`` of them
    change that slot."""
    frames = labels.shape[0]
    slots = int(labels.max()) + 1
    # frame t's slot k at index t * slots + k: [T, 1, 1] * K + [T, H, W] -> [T, H, W]
    keys = torch.arange(frames, device=labels.device).view(-1, 1, 1) * slots + labels
    result: dict[int, tuple[int, int]] = {}
    for object_id in torch.unique(ids).tolist():
        if object_id == BACKGROUND_ID:
            continue
        inside = ids == object_id  # [T, H, W]
        counts = torch.bincount(keys[inside], minlength=frames * slots).view(frames, slots)  # [T, K]
        visible = counts.sum(dim=1) > 0  # [T]
        holder = counts.argmax(dim=1)[visible]  # [V]: the frames it is visible in, in order
        changed = holder[1:] != holder[:-1]  # [V - 1]
        result[int(object_id)] = (int(changed.sum()), int(changed.numel()))
    return result


def object_overlaps(
    model: VideoSlotModel,
    dataset: Dataset[VideoClip],
    max_videos: int | None = None,
    mask_source: MaskSource = "decoder",
    progress: bool = False,
) -> list[ObjectOverlap]:
    """Best overlap of every object of the first ``max_videos`` videos.

    Raises:
        ValueError: a video has no masks or no synthetic metadata.
    """
    overlaps: list[ObjectOverlap] = []
    videos = predicted_videos(model, dataset, max_videos, mask_source, progress=progress, desc="objects")
    with closing(videos):
        for batch, masks in videos:
            ids, metadata, name = batch.masks, batch.metadata[0], batch.names[0]
            if ids is None or metadata is None:
                raise ValueError(
                    f"{name}: per-object recall needs masks and synthetic metadata (synthetic:<level>, or a "
                    "davis: folder written by python -m training.datasets generate, with its metadata/ folder)"
                )
            labels = upsample_to_labels(masks[0], (ids.shape[-2], ids.shape[-1]))  # [T, H, W]
            info = {obj.object_id: obj for obj in metadata.objects}
            switches = slot_switches_per_object(labels, ids[0])
            for object_id, best_iou in best_overlap_per_object(labels, ids[0]).items():
                obj = info[object_id]
                attributes = {"size": obj.size, "texture": obj.texture, "shape": obj.shape}
                overlaps.append(ObjectOverlap(name, object_id, attributes, best_iou, *switches[object_id]))
    return overlaps


def group_recall(overlaps: Sequence[ObjectOverlap], attribute: str) -> list[GroupRecall]:
    """Recall and slot switches per value of ``attribute`` (sorted by value), plus an ``all`` row first."""
    groups: dict[str, list[ObjectOverlap]] = defaultdict(list)
    for overlap in overlaps:
        groups[overlap.attributes[attribute]].append(overlap)
    rows = [("all", list(overlaps)), *sorted(groups.items())]
    return [_group_row(attribute, value, members) for value, members in rows if members]


def _group_row(attribute: str, value: str, members: Sequence[ObjectOverlap]) -> GroupRecall:
    ious = [member.best_iou for member in members]
    transitions = sum(member.transitions for member in members)
    switches = sum(member.switches for member in members)
    rate = 100 * switches / transitions if transitions else float("nan")
    found = sum(iou > FOUND_IOU for iou in ious) / len(ious)
    return GroupRecall(attribute, value, len(ious), sum(ious) / len(ious), found, rate)


def recall_rows(overlaps: Sequence[ObjectOverlap]) -> list[GroupRecall]:
    """The ``all`` row, then every value of every attribute: the lines of the table and of the chart."""
    grouped = [group_recall(overlaps, attribute) for attribute in ATTRIBUTES]  # each starts with the same all row
    return grouped[0][:1] + [row for rows in grouped for row in rows[1:]]


def format_recall(overlaps: Sequence[ObjectOverlap]) -> str:
    """A text table of ``recall_rows``: one line per group."""
    header = f"{'group':>18}  {'objects':>7}  {'mean best IoU':>13}  {f'found (IoU > {FOUND_IOU})':>18}"
    lines = [f"{header}  {'slot switches / 100 steps':>25}"]
    for row in recall_rows(overlaps):
        line = f"{row.label:>18}  {row.objects:>7}  {row.mean_best_iou:>13.3f}  {row.found:>18.2f}"
        lines.append(f"{line}  {row.switches_per_100:>25.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m training.object_recall", description=command_description(__doc__))
    parser.add_argument("--model", type=user_path_text, required=True, help="a save_pretrained directory")
    parser.add_argument(
        "--data", default="synthetic:medium", help="a synthetic data spec (synthetic:<level>; default: %(default)s)"
    )
    parser.add_argument("--videos", type=int, help="only the first N validation videos (default: all)")
    add_mask_source_option(parser)
    parser.add_argument("--plot", type=user_path, help="also draw the groups as a bar chart (PNG)")
    args = parser.parse_args(argv)
    require_at_least(parser, 1, {"--videos": args.videos})
    require_output_folder(parser, "--plot", args.plot, suffixes=(".png",), model_dir=Path(args.model))
    size_torch_threads_noted()  # torch's default is a thread per core of the node, not of the container
    try:
        model = VideoSlotModel.from_pretrained(args.model)
        dataset = evaluation_videos(args.data, model.image_size, None, on_unlabelled=print_note)
        overlaps = object_overlaps(model, dataset, args.videos, args.mask_source, progress=True)
    except (OSError, DatasetError, ValueError, RegistryError) as error:  # OSError: a file missing or unreadable
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_recall(overlaps))
    if args.plot:
        title = f"{Path(args.model).resolve().name} on {args.data}"
        subtitle = f"{len(overlaps)} objects of {args.videos or 'all'} videos, {args.mask_source} masks"
        print(f"chart: {save_recall_chart(recall_rows(overlaps), args.plot, title, subtitle)}")
    return 0


if __name__ == "__main__":
    from plugins.signals import exit_status_of

    raise SystemExit(exit_status_of(main, "python -m training.object_recall"))
