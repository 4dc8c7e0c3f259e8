"""``python -m training.ceiling --data SPEC --mask-size 16 32``: what masks of a given size can score on a dataset.

A model whose masks come out at ``r x r`` is scored after bilinear upsampling to the ground truth and argmax
(``training.metrics.masks``). Sending the ground truth itself through the same bottleneck (each instance's
indicator area-averaged down to ``r x r``, then upsampled and argmaxed like a model's masks) gives the scores of
a model that is perfect at that resolution: the ceiling reported for ``r x r`` masks. Small and thin objects are
the first to lose pixels, or to vanish, as ``r`` shrinks.

With ``K`` slots (``--num-slots``), one of them for the background, the objects beyond ``K - 1`` are merged into
the background: in video mode those beyond the video's ``K - 1`` largest, in image mode those beyond each frame's
``K - 1`` largest (a model may give a slot to one object in one frame and to another in the next, which image mode
does not penalise).

It is a reference, not a bound: soft masks can place an edge inside a cell (bilinear upsampling interpolates
between cells), so other ``r x r`` masks can score higher on some frames; a 2x2 object in a 16x16 frame, which
area-averaging to 4x4 loses, is recovered by sharper values (``tests/training/test_ceiling.py``).
``--fit-steps N`` measures how much: it fits ``r x r`` masks to the ground truth by gradient descent through the
same upsampling (starting from the area averages) and scores those.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from plugins.cli_help import command_description
from plugins.extras import require_extra
from plugins.files import user_path

if __name__ == "__main__":  # before the imports that need the extra: one line instead of a traceback
    require_extra("train", "python -m training.ceiling")

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from service.cli_limits import MAX_FRAME_SIDE, check_frame_side, check_memory
from training.cli_checks import print_note, require_at_least, require_output_folder
from training.config import FRAME_FITS
from training.datasets import VideoClip
from training.datasets.errors import DatasetError
from training.datasets.selection import evaluation_videos
from training.environment import size_torch_threads_noted
from training.evaluate import format_table
from training.metrics import DiscoveryScores, ObjectDiscoveryMetrics
from training.metrics.overlap import BackgroundPolicy


def downsampled_instances(ids: Tensor, size: tuple[int, int]) -> Tensor:
    """Soft masks ``[T, N, h, w]`` of the ``N`` distinct ids of ``ids [T, H, W]`` (background included), area-averaged.

    Each channel is the fraction of a low-resolution cell covered by one id, so the channels sum to 1 per cell.

    Raises:
        ValueError: ``ids`` is not 3-D, or its one-hot copies (int64, then float32: 12 bytes a pixel and id) would
            take more than :func:`service.cli_limits.memory_budget_bytes` (a video scored at a large
            ``--image-size``), checked before they are made.
    """
    if ids.dim() != 3:
        raise ValueError(f"ids must have shape [T, H, W], got {tuple(ids.shape)}")
    _, dense = torch.unique(ids, return_inverse=True)  # dense: [T, H, W] in [0, N)
    frames, height, width = ids.shape
    segments = int(dense.max()) + 1
    check_memory(
        ids.numel() * segments * 12,
        f"--image-size {height}x{width}: the {segments} one-hot ground-truth masks of a {frames}-frame video",
    )
    # [T, H, W] -> [T, H, W, N] -> [T, N, H, W]
    one_hot = F.one_hot(dense, segments).permute(0, 3, 1, 2).float()  # [T, N, H, W]
    return F.interpolate(one_hot, size=size, mode="area")  # [T, N, h, w]


def keep_largest_objects(ids: Tensor, keep: int) -> Tensor:
    """``ids [T, H, W]`` with every foreground id but the ``keep`` largest (by pixels over the whole video) turned
    into background (0): the segments the video-mode reference of a model with ``keep + 1`` slots, one for the
    background, scores (see :func:`keep_largest_objects_per_frame` for image mode)."""
    counts = torch.bincount(ids.reshape(-1).long())  # [T, H, W] -> [T*H*W]; [max_id + 1]
    counts[0] = -1  # the background is always kept
    present = (counts > 0).nonzero().squeeze(1)  # [M, 1] -> [M] foreground ids
    if present.numel() <= keep:
        return ids
    order = torch.argsort(counts[present], descending=True, stable=True)  # largest first, ties by lower id
    dropped = present[order[keep:]]  # [M - keep]
    return torch.where(torch.isin(ids, dropped), torch.zeros_like(ids), ids)


def keep_largest_objects_per_frame(ids: Tensor, keep: int) -> Tensor:
    """``ids [T, H, W]`` with every foreground id but the ``keep`` largest of each frame turned into background (0):
    the image-mode counterpart of :func:`keep_largest_objects`, since a model scored frame by frame may give a slot
    to one object in one frame and to another in the next."""
    return torch.stack([keep_largest_objects(frame[None], keep)[0] for frame in ids]) if len(ids) else ids


def fitted_instances(ids: Tensor, size: tuple[int, int], steps: int, lr: float = 0.1) -> Tensor:
    """Soft masks ``[T, N, h, w]`` of the ``N`` ids of ``ids [T, H, W]``, fitted to them through the evaluation's
    upsampling.

    Starts from :func:`downsampled_instances` and runs ``steps`` Adam steps on per-cell logits, minimising the
    cross-entropy of the ground truth under the softmax masks upsampled bilinearly to ``H x W`` (the evaluation's
    upsampling, before its argmax).
    """
    with torch.inference_mode(False), torch.enable_grad():  # also when called under inference mode
        ids = ids.clone()  # a normal tensor, even from an inference-mode one
        _, dense = torch.unique(ids, return_inverse=True)  # [T, H, W] in [0, N)
        logits = downsampled_instances(ids, size).clamp_min(1e-4).log().requires_grad_(True)  # [T, N, h, w]
        optimizer = torch.optim.Adam([logits], lr=lr)
        for _ in range(steps):
            upsampled = F.interpolate(logits.softmax(dim=1), size=ids.shape[-2:], mode="bilinear", align_corners=False)
            loss = F.nll_loss(upsampled.clamp_min(1e-6).log(), dense)  # [T, N, H, W] against [T, H, W]
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()
    return logits.detach().softmax(dim=1)


@torch.inference_mode()
def mask_size_ceiling(
    dataset: Dataset[VideoClip],
    mask_size: tuple[int, int],
    max_videos: int | None = None,
    background: BackgroundPolicy = "ignore",
    progress: bool = False,
    fit_steps: int = 0,
    num_slots: int | None = None,
) -> DiscoveryScores:
    """Scores of the ground truth sent through masks of ``mask_size`` ``(h, w)``, with ``training.evaluate``'s metrics.

    ``fit_steps > 0`` scores :func:`fitted_instances` instead of the area averages. With ``num_slots`` at most that
    many segments are kept, one of them the background, and the other objects are merged into it: in video mode
    those beyond the video's ``num_slots - 1`` largest (:func:`keep_largest_objects`), in image mode those beyond
    each frame's (:func:`keep_largest_objects_per_frame`). A reference, not a bound (see the module docstring).

    Raises:
        ValueError: a side of ``mask_size`` is not positive, ``fit_steps`` is negative, ``num_slots`` is below 1,
            or the dataset has no masks.
    """
    height, width = mask_size
    if height < 1 or width < 1:
        raise ValueError(f"mask size must be positive, got {height}x{width}")
    if fit_steps < 0:
        raise ValueError(f"fit_steps must be >= 0, got {fit_steps}")
    if num_slots is not None and num_slots < 1:
        raise ValueError(f"num_slots must be at least 1, got {num_slots}")
    label = f"{height}x{width}"
    how = f"fitted at {label} ({fit_steps} steps)" if fit_steps else f"area-averaged to {label}"
    if num_slots is not None:
        how += f", at most {num_slots} segments (per video in video mode, per frame in image mode)"
    metrics = ObjectDiscoveryMetrics(background=background, mask_source=f"ground truth {how}")
    # image-mode scores with num_slots: each frame keeps its own largest objects
    frame_metrics = ObjectDiscoveryMetrics(background=background, mask_source=f"ground truth {how}")
    count = len(dataset) if max_videos is None else min(max_videos, len(dataset))  # type: ignore[arg-type]
    for index in tqdm(range(count), desc=f"ceiling {label}", disable=not progress, leave=False):
        clip = dataset[index]
        if clip.masks is None:
            raise ValueError(f"cannot compute a ceiling on unlabelled data ({clip.name} has no masks)")
        # [T, H, W]; void pixels (-1) are not scored, but the masks made here count them as background, which
        # pulls cells on DAVIS 2017's void object borders towards it: a slightly low ceiling there.
        ids = clip.masks.clamp_min(0)
        video_ids = ids if num_slots is None else keep_largest_objects(ids, num_slots - 1)  # [T, H, W]
        soft = _bottleneck(video_ids, mask_size, fit_steps)  # [T, N, h, w]
        # [T, N, h, w] -> [1, T, N, h, w] and [T, H, W] -> [1, T, H, W]
        metrics.update(soft[None], clip.masks[None])  # [1, T, N, h, w] against [1, T, H, W]
        if num_slots is not None:
            frame_ids = keep_largest_objects_per_frame(ids, num_slots - 1)  # [T, H, W]
            same = torch.equal(frame_ids, video_ids)
            frame_soft = soft if same else _bottleneck(frame_ids, mask_size, fit_steps)  # [T, N', h, w]
            frame_metrics.update(frame_soft[None], clip.masks[None])  # [1, T, N', h, w] against [1, T, H, W]
    scores = metrics.compute()
    if num_slots is None:
        return scores
    per_frame = frame_metrics.compute()
    image_fields = ("image_ari", "image_fg_ari", "image_mbo", "image_miou", "num_frames", "num_invalid_frames")
    return dataclasses.replace(scores, **{name: getattr(per_frame, name) for name in image_fields})


def _bottleneck(ids: Tensor, mask_size: tuple[int, int], fit_steps: int) -> Tensor:
    """Soft masks ``[T, N, h, w]`` of ``ids [T, H, W]``: fitted in ``fit_steps`` steps, or area-averaged."""
    return fitted_instances(ids, mask_size, fit_steps) if fit_steps else downsampled_instances(ids, mask_size)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m training.ceiling", description=command_description(__doc__))
    parser.add_argument("--data", required=True, help="data spec with masks (synthetic:<level>, davis:<root>, ...)")
    parser.add_argument(
        "--mask-size",
        type=int,
        nargs="+",
        default=[16, 32],
        help="mask sides to score, at most --image-size (default: 16 32)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=64,
        help=f"side the ground truth is scored at, at most {MAX_FRAME_SIDE} (default: %(default)s)",
    )
    parser.add_argument("--videos", type=int, help="only the first N validation videos (default: all)")
    parser.add_argument(
        "--background",
        choices=["ignore", "segment"],
        default="ignore",
        help="ignore: the background is no segment in mBO/mIoU; segment: it counts as one (default: %(default)s)",
    )
    parser.add_argument("--json", type=user_path, help="also write the scores here, keyed by mask size")
    parser.add_argument(
        "--fit-steps",
        type=int,
        default=0,
        help="score masks fitted to the ground truth in N steps (0: area averages; default: %(default)s)",
    )
    parser.add_argument(
        "--num-slots",
        type=int,
        help="at most this many segments, one the background: the smallest objects beyond them are merged into the "
        "background, per video in video mode and per frame in image mode (default: none merged)",
    )
    parser.add_argument(
        "--frame-fit",
        choices=FRAME_FITS,
        default="crop",
        help="fit real frames of another aspect ratio as the model's training did: crop (centre crop) or stretch "
        "(default: %(default)s; a model card's ceiling row uses its run's fit)",
    )
    args = parser.parse_args(argv)
    require_at_least(
        parser, 1, {"--videos": args.videos, "--image-size": args.image_size, "--num-slots": args.num_slots}
    )
    require_at_least(parser, 1, {"--mask-size": min(args.mask_size)})
    require_at_least(parser, 0, {"--fit-steps": args.fit_steps})
    try:
        check_frame_side(args.image_size, "--image-size")
    except ValueError as error:
        parser.error(str(error))
    if max(args.mask_size) > args.image_size:
        parser.error(
            f"--mask-size {max(args.mask_size)} is larger than --image-size {args.image_size}: masks are "
            "area-averaged down from the ground truth at --image-size, so give sides of at most it"
        )
    require_output_folder(parser, "--json", args.json)
    size_torch_threads_noted()  # torch's default is a thread per core of the node, not of the container
    results: dict[str, object] = {}
    try:
        size = (args.image_size, args.image_size)
        crop = args.frame_fit == "crop"
        dataset = evaluation_videos(args.data, size, None, on_unlabelled=print_note, center_crop=crop)
        for size in args.mask_size:
            scores = mask_size_ceiling(
                dataset,
                (size, size),
                args.videos,
                args.background,
                progress=True,
                fit_steps=args.fit_steps,
                num_slots=args.num_slots,
            )
            print(f"masks {size}x{size}:\n{format_table(scores)}\n")
            results[str(size)] = scores.to_dict()
    except (OSError, DatasetError, ValueError) as error:  # OSError: a file missing or unreadable
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        payload = {"data": args.data, "fit_steps": args.fit_steps, "ceilings": results}
        try:
            args.json.write_text(json.dumps(payload, indent=2) + "\n")
        except OSError as error:
            print(f"error: cannot write --json {args.json}: {error.strerror}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    from plugins.signals import exit_status_of

    raise SystemExit(exit_status_of(main, "python -m training.ceiling"))
