"""Frames per second of the synthetic video generator, per level, in one process.

Run: ``python -m training.benchmarks.bench_synthetic [--videos 200] [--frames 24] [--size 64]``. Generation
includes rendering, id maps and all per-frame metadata; writing to disk and tensor conversion are excluded.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Sequence

from plugins.cli_help import command_description
from training.datasets.synthetic import LEVELS, generate_video


def measure(level: str, videos: int, frames: int, size: int) -> float:
    """Returns generated frames per second for ``videos`` videos of ``frames`` frames at ``size`` x ``size``."""
    generate_video(level, 0, frames, (size, size))  # warm-up
    start = time.perf_counter()
    for seed in range(videos):
        generate_video(level, seed, frames, (size, size))
    return videos * frames / (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> int:
    """Prints one line per level; returns the process exit code."""
    parser = argparse.ArgumentParser(description=command_description(__doc__))
    parser.add_argument("--videos", type=int, default=200, help="videos per level")
    parser.add_argument("--frames", type=int, default=24, help="frames per video")
    parser.add_argument("--size", type=int, default=64, help="frame height and width")
    args = parser.parse_args(argv)
    if args.videos < 1 or args.frames < 1 or args.size < 8:
        parser.error("need --videos >= 1, --frames >= 1 and --size >= 8 (as python -m training.datasets generate)")
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}, one process")
    for level in LEVELS:
        fps = measure(level, args.videos, args.frames, args.size)
        print(
            f"{level:8s} {fps:10.0f} frames/s  ({args.videos} videos x {args.frames} frames, {args.size}x{args.size})"
        )
    return 0


if __name__ == "__main__":
    from plugins.signals import exit_status_of

    raise SystemExit(exit_status_of(main, "python -m training.benchmarks.bench_synthetic"))
