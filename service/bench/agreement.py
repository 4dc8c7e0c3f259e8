"""``--agreement``: serve the same synthetic streams with two backends and compare what a client receives.

The check an operator runs before switching a deployment to an accelerated backend: each backend gets its own
server (``python -m service`` in a child process, as deployed), every clip is streamed through each as one
stream, and the answers are compared frame by frame: the share of segmentation pixels given the same slot,
the largest slot difference, and the share of pixels the reference's own soft masks leave tied within the
segmentation's tie tolerance (where float rounding, not the model, would decide a plain argmax).

    python -m service.bench --agreement --model EXPORT_DIR [--backends torch,onnx] [--clips 12] [--seed 230]

Exit status: 0 when every clip's segmentations agree on at least ``--min-agreement`` of the pixels, 1 when one
does not (a ``PASSED: ...`` line on stdout, or ``FAILED: ...`` on stderr, says which, with the lowest share), 2
for bad arguments or a model a server cannot load. Shares are printed with at least 4 decimals, and with as many
more as it takes for a share below 1 never to read ``100.0000%`` (:func:`format_share`). The ``--json`` report
records the command line, machine and versions (:mod:`service.bench.provenance`), every setting, the verdict
(``passed``, ``below_min_agreement``) and the per-clip figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from plugins.cli_help import command_description
from plugins.files import user_path
from service.bench.cli import backend_names, json_output_problems, unknown_backends, usage_error
from service.bench.provenance import provenance, redact
from service.bench.spawn import SpawnedServer
from service.cli_limits import MAX_FRAME_SIDE, check_frame_side, check_memory
from service.client.errors import StreamError
from service.config import ConfigError, ServiceConfig
from service.types import FrameResult, Output, StreamOptions

OUTPUTS = frozenset({Output.SLOTS, Output.SEGMENTATION, Output.SOFT_MASKS})
MIN_SIZE = 8
"""The smallest ``--size``: the synthetic generator's smallest frame side."""


@dataclass(frozen=True)
class ClipAgreement:
    """How far two backends' answers to one synthetic stream agree.

    Attributes:
        seed: the clip's generator seed (``synthetic:medium``).
        frames: frames in the stream.
        segmentation_agreement: share of segmentation pixels given the same slot.
        tied: share of the reference's pixels whose two most likely slots differ by at most the segmentation's
            tie tolerance.
        slots_max_abs: largest absolute slot difference over the stream.
    """

    seed: int
    frames: int
    segmentation_agreement: float
    tied: float
    slots_max_abs: float


def synthetic_clips(seeds: Sequence[int], frames: int, size: int) -> dict[int, list[np.ndarray]]:
    """``synthetic:medium`` videos by seed: uint8 ``[H, W, 3]`` frames."""
    from training.datasets.synthetic import generate_video

    videos = {seed: generate_video("medium", seed=seed, num_frames=frames, size=(size, size)) for seed in seeds}
    return {seed: list(video.frames) for seed, video in videos.items()}


@dataclass(frozen=True)
class HeldAnswer:
    """What the comparison keeps of one frame's answer: its soft masks (``[K, H, W]`` float32, the largest part)
    are reduced to a count as the answer arrives, so a long or large run holds ``[H, W]`` bytes a frame.

    Attributes:
        slots: ``[K, D]`` float32.
        segmentation: uint8 ``[H, W]``.
        tied: pixels whose two most likely slots are within the segmentation's tie tolerance.
    """

    slots: np.ndarray
    segmentation: np.ndarray
    tied: int


def held(answer: FrameResult) -> HeldAnswer:
    """The part of ``answer`` (asked for with :data:`OUTPUTS`) :func:`compare` reads."""
    import torch

    from plugins.segmentation import near_ties

    assert answer.slots is not None and answer.segmentation is not None and answer.soft_masks is not None
    masks = torch.from_numpy(np.array(answer.soft_masks, dtype=np.float32))  # a writable copy: [K, H, W]
    return HeldAnswer(answer.slots, answer.segmentation, int(near_ties(masks).sum()))


def serve_clips(
    model_dir: Path, backend: str, clips: dict[int, list[np.ndarray]], server_args: Sequence[str] = ()
) -> dict[int, list[HeldAnswer]]:
    """Stream every clip (one stream each) through a server of ``backend`` and return what :func:`compare` reads
    of its answers (:func:`held`, taken from each answer as it arrives).

    Raises:
        RuntimeError: the server did not start, or a frame was dropped or failed (the message says which).
    """
    from service.client import stream_frames

    answers: dict[int, list[HeldAnswer]] = {}
    with SpawnedServer(model_dir, ["--backend", backend, *server_args]) as server:
        for seed, clip in clips.items():
            answers[seed] = []
            for answer in stream_frames(server.target, clip, StreamOptions(outputs=OUTPUTS), window=4):
                if not isinstance(answer, FrameResult):
                    raise RuntimeError(f"--backend {backend}, clip {seed}: frame {answer.frame_index} was {answer}")
                answers[seed].append(held(answer))
    return answers


def compare(reference: Sequence[HeldAnswer], other: Sequence[HeldAnswer], seed: int) -> ClipAgreement:
    """Compare two backends' answers to the same stream, frame by frame (ties counted on the reference's)."""
    same = tied = total = 0
    slots_max_abs = 0.0
    for a, b in zip(reference, other, strict=True):
        slots_max_abs = max(slots_max_abs, float(np.abs(a.slots - b.slots).max()))
        tied += a.tied
        same += int(np.sum(a.segmentation == b.segmentation))
        total += a.segmentation.size
    return ClipAgreement(seed, len(reference), same / total, tied / total, slots_max_abs)


def clips_bytes(clips: int, frames: int, size: int) -> int:
    """About the most memory the comparison holds: every clip's video, as the generator makes it
    (:func:`training.datasets.synthetic.generator.video_bytes`), and both backends' segmentations of every frame
    (:class:`HeldAnswer`; the slots, ``K x D`` floats a frame, are left out: a few KB for the shipped models)."""
    from training.datasets.synthetic.generator import video_bytes

    segmentations = 2 * frames * size * size
    return clips * (video_bytes("medium", frames, (size, size)) + segmentations)


def _size_problems(clips: int, frames: int, size: int) -> list[str]:
    """The problem with frames of ``size`` pixels a side (beyond :data:`~service.cli_limits.MAX_FRAME_SIDE`), or
    with holding ``clips`` clips of ``frames`` of them in memory at once (beyond
    :func:`~service.cli_limits.memory_budget_bytes`); checked before any clip is made."""
    if min(clips, frames) < 1 or size < MIN_SIZE:
        return []  # reported as such
    try:
        check_frame_side(size, "--size")
        what = f"--clips {clips} x --frames {frames} at --size {size} (every clip and its answers are held)"
        check_memory(clips_bytes(clips, frames, size), what)
    except ValueError as error:
        return [str(error)]
    return []


def build_parser() -> argparse.ArgumentParser:
    """The ``--agreement`` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m service.bench --agreement", description=command_description(__doc__), allow_abbrev=False
    )
    parser.add_argument("--agreement", action="store_true", required=True, help="compare two backends' answers")
    parser.add_argument(
        "--model", type=user_path, required=True, help="export directory (or a model directory for torch)"
    )
    parser.add_argument("--backends", default="torch,onnx", help="reference,other (default: torch,onnx)")
    parser.add_argument("--clips", type=int, default=12, help="synthetic:medium clips, one stream each (default: 12)")
    parser.add_argument("--seed", type=int, default=230, help="seed of the first clip; the others follow (230)")
    parser.add_argument("--frames", type=int, default=100, help="frames per clip (default: 100)")
    parser.add_argument(
        "--size", type=int, default=64, help=f"frame side in pixels, {MIN_SIZE} to {MAX_FRAME_SIDE} (default: 64)"
    )
    parser.add_argument(
        "--min-agreement", type=float, default=0.999, help="pass mark per clip, in (0, 1] (default: 0.999)"
    )
    parser.add_argument("--server-args", default="", help="more python -m service flags for both servers")
    parser.add_argument("--json", type=user_path, help="write the per-clip figures here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(args_list)
    backends = backend_names(args.backends)
    problems = json_output_problems(args.json, args.model)
    if len(backends) != 2:
        problems.append(f"--backends names two backends (reference,other), got {args.backends!r}")
    problems += unknown_backends("--backends", backends)
    if min(args.clips, args.frames) < 1 or args.seed < 0:
        problems.append("need --clips and --frames >= 1 and --seed >= 0")
    if args.size < MIN_SIZE:
        problems.append(
            f"--size must be at least {MIN_SIZE} pixels (the synthetic clips' smallest frame), got {args.size}"
        )
    problems += _size_problems(args.clips, args.frames, args.size)
    if not 0 < args.min_agreement <= 1:  # also refuses NaN
        problems.append(f"--min-agreement is a share of the pixels in (0, 1], got {args.min_agreement}")
    if not args.model.is_dir():
        problems.append(f"--model {args.model} is not a directory")
    if problems:
        return usage_error("--agreement", problems)
    server_args = args.server_args.split()
    try:  # what both servers will run with (--device, SLOTSTREAM_* included); refused flags fail here
        config = ServiceConfig.from_sources(["--model-dir", str(args.model), *server_args])
    except ConfigError as error:
        return usage_error("--agreement", [f"--server-args: {error}"])
    clips = synthetic_clips(range(args.seed, args.seed + args.clips), args.frames, args.size)
    try:
        served = [serve_clips(args.model, backend, clips, server_args) for backend in backends]
    except RuntimeError as error:
        print(f"python -m service.bench --agreement: {error}", file=sys.stderr)
        return 2
    except StreamError as error:  # a server that refuses the streams (say one that requires a token)
        print(f"python -m service.bench --agreement: {error}", file=sys.stderr)
        return 1
    results = [compare(served[0][seed], served[1][seed], seed) for seed in clips]
    print(format_table(results, backends))
    below = failing_clips(results, args.min_agreement)
    print(verdict(results, args.min_agreement), file=sys.stderr if below else sys.stdout)
    if args.json is not None:
        settings = {"clips": args.clips, "seed": args.seed, "frames": args.frames, "size": args.size}
        settings |= {"min_agreement": args.min_agreement, "server_args": redact(server_args), "device": config.device}
        report = {
            "provenance": provenance(args_list, device=config.device),
            "backends": backends,
            "model": str(args.model),
            "settings": settings,
            "passed": not below,
            "below_min_agreement": below,
            "clips": [asdict(r) for r in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if below else 0


def failing_clips(results: Sequence[ClipAgreement], min_agreement: float) -> list[int]:
    """Seeds of the clips whose segmentations agree on less than ``min_agreement`` of the pixels."""
    return [r.seed for r in results if r.segmentation_agreement < min_agreement]


def format_share(share: float) -> str:
    """``share`` (in [0, 1]) as a percentage with at least 4 decimals, and more where 4 would round a share below 1
    up to ``100.0000%`` (or one above 0 down to ``0.0000%``): a figure below the mark never reads as reaching it.
    Exactly 1 is ``100%``."""
    if share == 1:
        return "100%"
    for decimals in range(4, 16):
        text = f"{share:.{decimals}%}"
        if float(text[:-1]) / 100 not in (0.0, 1.0) or share == 0:
            return text
    return f"{share!r} (as a fraction)"


def verdict(results: Sequence[ClipAgreement], min_agreement: float) -> str:
    """The pass/fail line: whether every clip's segmentations agree on at least ``min_agreement`` of the pixels,
    the lowest agreement and, on failure, the clips below the mark."""
    lowest = min(results, key=lambda r: r.segmentation_agreement)
    mark = format_share(min_agreement)
    below = failing_clips(results, min_agreement)
    if not below:
        return (
            f"PASSED: segmentations agree on at least {mark} of the pixels on "
            f"{'the 1 clip' if len(results) == 1 else f'all {len(results)} clips'} (lowest "
            f"{format_share(lowest.segmentation_agreement)}, clip {lowest.seed})"
        )
    return (
        f"FAILED: clips {below}: segmentations agree on less than {mark} of the pixels (lowest "
        f"{format_share(lowest.segmentation_agreement)}, clip {lowest.seed}); {len(results) - len(below)} of "
        f"{len(results)} clips pass"
    )


def format_table(results: Sequence[ClipAgreement], backends: Sequence[str]) -> str:
    """The per-clip figures as a Markdown table, with a summary line."""
    lines = [
        f"| clip seed | frames | same segment ({backends[1]} vs {backends[0]}) | tied pixels | slots max abs diff |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.seed} | {r.frames} | {format_share(r.segmentation_agreement)} | {r.tied:.2%} | "
            f"{r.slots_max_abs:.2g} |"
        )
    agreements = [r.segmentation_agreement for r in results]
    close = sum(r.slots_max_abs <= 1e-4 for r in results)
    lines.append(
        f"segmentations agree on {format_share(min(agreements))} to {format_share(max(agreements))} of the pixels; "
        "slots within 1e-4 on "
        f"{close} of {len(results)} clips"
    )
    return "\n".join(lines)
