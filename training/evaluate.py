"""``python -m training.evaluate --model DIR --data SPEC [--json OUT]``: object-discovery metrics of a model.

Prints ARI, FG-ARI, mBO and mIoU in video mode (all frames of a video form one clustering, so a slot that
swaps objects is penalised) and image mode (each frame scored alone), with the background policy and the
mask source stated. Ground truth is fitted to the model's input size like the frames; predicted masks are
upsampled bilinearly to it, then argmax over slots.
``--by-objects`` adds the video-mode scores of the videos with each number of ground-truth objects (a model with
more slots than objects may split objects over the spare ones).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from plugins.cli_help import command_description
from plugins.extras import require_extra
from plugins.files import user_path, user_path_text

if __name__ == "__main__":  # before the imports that need the extra: one line instead of a traceback
    require_extra("train", "python -m training.evaluate")

from plugins import VideoSlotModel
from plugins.registry import RegistryError
from training.cli_checks import print_note, require_at_least, require_device, require_output_folder
from training.config import FRAME_FITS
from training.datasets.errors import DatasetError
from training.datasets.selection import evaluation_videos
from training.environment import size_torch_threads_noted
from training.evaluation import add_mask_source_option, evaluate_by_object_count
from training.metrics import DiscoveryScores


def format_table(scores: DiscoveryScores) -> str:
    """A small text table of the scores and the conventions behind them."""
    rows = [
        ("", "ARI", "FG-ARI", "mBO", "mIoU"),
        ("video", *(f"{v:.4f}" for v in (scores.video_ari, scores.video_fg_ari, scores.video_mbo, scores.video_miou))),
        ("image", *(f"{v:.4f}" for v in (scores.image_ari, scores.image_fg_ari, scores.image_mbo, scores.image_miou))),
    ]
    lines = ["  ".join(f"{cell:>8}" for cell in row) for row in rows]
    lines += [
        f"videos: {scores.num_videos}  frames: {scores.num_frames}  "
        f"invalid (no foreground): {scores.num_invalid_videos} videos, {scores.num_invalid_frames} frames",
        f"background: {scores.background_policy} ({scores.background_convention})",
        f"masks: {scores.mask_source}; {scores.mask_upsampling}",
    ]
    return "\n".join(lines)


def frame_fit_used(flag: str | None, recorded: str | None, data: str = "") -> tuple[str | None, str]:
    """The frame fit an evaluation uses and where it comes from: none for ``synthetic:`` data, made at the model's
    input size (``(None, "none")``), else ``--frame-fit`` when given (``"flag"``), else the fit the model records
    from its training (``"model"``), else ``crop`` (``"default"``)."""
    if data.startswith("synthetic:"):
        return None, "none"
    if flag is not None:
        return flag, "flag"
    if recorded is not None:
        return recorded, "model"
    return "crop", "default"


_FIT_SOURCES = {
    "flag": "--frame-fit",
    "model": "recorded by the model",
    "default": "the default",
    "none": "synthetic videos are made at the model's input size",
}


def format_settings(frame_fit: str | None, source: str, videos: int | None, frames: int | None) -> str:
    """The summary line of the settings that change the scores besides the background and mask source."""
    return (
        f"frame fit: {frame_fit or 'none'} ({_FIT_SOURCES[source]})  "
        f"videos: {'all' if videos is None else f'at most {videos}'}"
        f"  frames: {'whole videos' if frames is None else f'at most the first {frames} of each video'}"
    )


def format_by_object_count(groups: Mapping[int, DiscoveryScores]) -> str:
    """A text table of the video-mode scores of each group of videos with the same number of objects."""
    rows: list[tuple[str, ...]] = [("objects", "videos", "ARI", "FG-ARI", "mBO", "mIoU")]
    for count, scores in groups.items():
        values = (scores.video_ari, scores.video_fg_ari, scores.video_mbo, scores.video_miou)
        rows.append((str(count), str(scores.num_videos), *(f"{v:.4f}" for v in values)))
    return "\n".join(["video mode by number of objects:", *("  ".join(f"{c:>8}" for c in row) for row in rows)])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=command_description(__doc__))
    parser.add_argument("--model", type=user_path_text, required=True, help="a save_pretrained directory")
    parser.add_argument("--data", required=True, help="data spec with masks (synthetic:<level>, davis:<root>, ...)")
    parser.add_argument("--json", type=user_path, help="also write the scores here")
    parser.add_argument("--videos", type=int, help="evaluate only the first N videos")
    parser.add_argument("--frames", type=int, help="at most the first N frames of each video (default: all)")
    add_mask_source_option(parser)
    parser.add_argument(
        "--background",
        choices=["ignore", "segment"],
        default="ignore",
        help="ignore: the background is no segment in mBO/mIoU (the DINOSAUR/VideoSAUR convention, as FG-ARI); "
        "segment: it counts as one, as the SmoothSA/RandSF.Q code scores (default: %(default)s)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--by-objects", action="store_true", help="also score the videos with each number of objects separately"
    )
    parser.add_argument(
        "--frame-fit",
        choices=FRAME_FITS,
        help="fit real frames of another aspect ratio: crop (centre crop) or stretch (default: the fit the model "
        "records from its training, else crop)",
    )
    args = parser.parse_args(argv)
    require_at_least(parser, 1, {"--videos": args.videos, "--frames": args.frames})
    require_output_folder(parser, "--json", args.json, model_dir=Path(args.model))
    require_device(parser, args.device)
    size_torch_threads_noted()  # torch's default is a thread per core of the node, not of the container
    try:
        model = VideoSlotModel.from_pretrained(args.model, map_location=args.device)
        frame_fit, fit_source = frame_fit_used(args.frame_fit, model.frame_fit, args.data)
        if fit_source == "none" and args.frame_fit is not None:
            print_note(f"note: --frame-fit {args.frame_fit} does nothing here: synthetic videos need no fit")
        if frame_fit is not None and frame_fit not in FRAME_FITS:
            raise ValueError(
                f"{args.model} records the frame fit {frame_fit!r}, which evaluation does not do; choose "
                f"--frame-fit {' or '.join(FRAME_FITS)}"
            )
        dataset = evaluation_videos(
            args.data, model.image_size, args.frames, on_unlabelled=print_note, center_crop=frame_fit == "crop"
        )
        scores, by_count = evaluate_by_object_count(
            model,
            dataset,
            max_videos=args.videos,
            mask_source=args.mask_source,
            background=args.background,
            device=args.device,
            progress=True,
        )
    except (OSError, DatasetError, ValueError, RegistryError) as error:  # OSError: a file missing or unreadable
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(scores))
    print(format_settings(frame_fit, fit_source, args.videos, args.frames))
    if by_count and max(by_count) <= 1:
        print_note(
            "note: no video has more than one object, so FG-ARI only says whether each object fell in a single "
            "slot (1) or was split (0); read mBO and mIoU here"
        )
    if args.by_objects:
        print(format_by_object_count(by_count))
    if args.json:
        payload = {
            "model": str(args.model),
            "data": args.data,
            "frame_fit": frame_fit,
            "frame_fit_source": fit_source,  # "flag", "model" (recorded from its training), "default" or "none"
            "videos": args.videos,  # the --videos limit; None: every labelled video
            "frames": args.frames,  # the --frames limit; None: whole videos
            **scores.to_dict(),
        }
        if args.by_objects:
            payload["by_object_count"] = {str(count): group.to_dict() for count, group in by_count.items()}
        try:
            args.json.write_text(json.dumps(payload, indent=2) + "\n")
        except OSError as error:
            print(f"error: cannot write --json {args.json}: {error.strerror}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    from plugins.signals import exit_status_of

    raise SystemExit(exit_status_of(main, "python -m training.evaluate"))
