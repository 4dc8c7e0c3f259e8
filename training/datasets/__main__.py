"""``python -m training.datasets generate --level medium --videos N --frames T --size S --out DIR``: synthetic
videos on disk, as a dataset any ``davis:`` spec reads.

Writes synthetic videos in the DAVIS 2017 layout (see ``training.datasets.export``). Video ``i`` is generated with
the seed of train video ``i`` of ``synthetic:<level>`` built with the same ``--seed``, so the output is
deterministic and, at 24 frames, identical to that dataset's train videos. With ``--split val`` video ``i`` is
validation video ``i`` of ``synthetic:<level>`` instead (named ``<level>-val-<i>``): with the default 24 frames
at 64x64 and ``--videos 64`` these are the videos every published score of the project is measured on, to score
another model on the same videos.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from plugins.cli_help import command_description
from plugins.extras import require_extra

if __name__ == "__main__":  # before the imports that need the extra: one line instead of a traceback
    require_extra("train", "python -m training.datasets")

from plugins.files import check_writable, user_path
from service.cli_limits import MAX_FRAME_SIDE, check_frame_side, check_memory
from training.cli_checks import require_output_dir
from training.datasets.export import DATASET_FOLDERS, mp4_needs_even_size, remove_sequence, write_sequence
from training.datasets.images import is_visible
from training.datasets.synthetic import LEVELS, generate_video
from training.datasets.synthetic.generator import video_bytes
from training.datasets.synthetic_dataset import VAL_SEED_BASE, train_video_seed


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The command line and its ``generate`` command (whose usage line its errors show)."""
    parser = argparse.ArgumentParser(prog="python -m training.datasets", description=command_description(__doc__))
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write a synthetic dataset in the DAVIS 2017 layout")
    gen.add_argument(
        "--level", choices=sorted(LEVELS), default="medium", help="difficulty level (default: %(default)s)"
    )
    gen.add_argument("--videos", type=int, required=True, help="number of videos")
    gen.add_argument(
        "--frames",
        type=int,
        default=24,
        help="frames per video (default: %(default)s); each video is made whole in memory before it is written, so "
        "at most as many as fit in a quarter of it",
    )
    gen.add_argument(
        "--size",
        type=int,
        default=64,
        help=f"frame height and width in pixels, 8 to {MAX_FRAME_SIDE} (below about 32 small objects are a few "
        "pixels, and their shapes and sizes hard to tell apart; default: %(default)s)",
    )
    gen.add_argument("--out", type=user_path, required=True, help="output folder (empty or new)")
    gen.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a dataset this command wrote in --out before (other files there stay; dataset folders "
        "holding anything it did not write are refused)",
    )
    gen.add_argument(
        "--seed", type=int, default=0, help="dataset seed, in [0, 2**30) (train split only; default: %(default)s)"
    )
    gen.add_argument(
        "--split",
        choices=("train", "val"),
        default="train",
        help="train: the seeded training videos; val: the fixed validation videos every evaluation scores "
        "(default: %(default)s)",
    )
    gen.add_argument(
        "--mp4",
        action="store_true",
        help="also write videos/<seq>.mp4 with its masks in videos/<seq>/ (PyAV; H.264 4:4:4, or an even --size "
        "without libx264)",
    )
    return parser, gen


def not_generated(out: Path) -> Path | None:
    """The first entry of the dataset folders in ``out`` that is not part of a dataset ``generate`` wrote (so
    ``--overwrite`` must not delete it); ``None`` when there is none.

    A generated sequence ``<seq>`` has ``metadata/<seq>.json`` (with the generator's version in it) and lives in
    ``JPEGImages/<res>/<seq>/``, ``Annotations/<res>/<seq>/`` and, with ``--mp4``, ``videos/<seq>.mp4`` and
    ``videos/<seq>/``; anything else there (a user's own videos, a real DAVIS root) is foreign, except hidden entries
    (names starting with ``.``, such as macOS's ``.DS_Store`` and ``._<name>`` files), which the dataset readers
    ignore too.
    """
    sequences: set[str] = set()
    metadata = out / "metadata"
    for path in _visible_entries(metadata):
        if path.suffix != ".json" or not path.is_file() or b'"generator_version"' not in path.read_bytes():
            return path
        sequences.add(path.stem)
    for folder in ("JPEGImages", "Annotations"):
        for res in _visible_entries(out / folder):
            if not res.is_dir():
                return res
            if (entry := next((p for p in _visible_entries(res) if p.name not in sequences), None)) is not None:
                return entry
    for path in _visible_entries(out / "videos"):
        if path.name.removesuffix(".mp4") not in sequences:
            return path
    for name in DATASET_FOLDERS:
        if (out / name).exists() and not (out / name).is_dir():
            return out / name
    return None


def _visible_entries(folder: Path) -> list[Path]:
    """The entries of ``folder`` that are not hidden (see :func:`is_visible`), sorted; none when it is no folder."""
    return sorted(path for path in folder.iterdir() if is_visible(path)) if folder.is_dir() else []


STAGING_PREFIX = ".generate-"
"""Name prefix of the hidden folder in ``--out`` that a dataset replacing another is written to (hidden entries are
not part of a dataset: see :func:`not_generated`)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the process exit code."""
    from tqdm import tqdm

    top, parser = _parser()
    args = top.parse_args(argv)
    if args.videos < 1 or args.frames < 1 or args.size < 8:
        parser.error("need --videos >= 1, --frames >= 1 and --size >= 8")
    try:  # each video is made whole in memory before it is written
        check_frame_side(args.size, "--size")
        needed = video_bytes(args.level, args.frames, (args.size, args.size))
        asked = f"--frames {args.frames} at --size {args.size} (--level {args.level})"
        check_memory(needed, f"{asked}: one video's frames, masks and metadata")
    except ValueError as error:
        parser.error(str(error))
    if not 0 <= args.seed < 2**30:
        parser.error(f"--seed must be in [0, 2**30), got {args.seed}")
    if args.split == "val" and args.seed:
        parser.error("--seed chooses training videos; the validation videos (--split val) are fixed")
    if args.mp4 and args.size % 2 and mp4_needs_even_size():
        parser.error(f"--mp4 needs an even --size without libx264 (4:2:0 video), got {args.size}")
    require_output_dir(parser, "--out", args.out, "the dataset")
    if args.out.is_dir() and any(args.out.iterdir()):
        if not args.overwrite:
            parser.error(f"--out {args.out} is not empty; choose another folder or pass --overwrite to replace it")
        if (foreign := not_generated(args.out)) is not None:
            parser.error(f"--overwrite replaces only a dataset this command wrote, but {foreign} is not part of one")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        check_writable(args.out)
    except OSError as error:
        parser.error(f"--out {args.out}: cannot write there ({error.strerror or error})")
    for leftover in args.out.glob(f"{STAGING_PREFIX}*"):  # a killed --overwrite's: never a running one's dataset
        shutil.rmtree(leftover, ignore_errors=True)
    # Replacing a dataset: the new one is written beside it and takes its place once whole, so an interruption or a
    # failure leaves the old one as it was.
    replacing = any(args.out.iterdir())
    target = Path(tempfile.mkdtemp(dir=args.out, prefix=STAGING_PREFIX)) if replacing else args.out
    prefix = args.level if args.split == "train" else f"{args.level}-val"
    written = 0
    try:
        for index in tqdm(range(args.videos), desc=f"generate {args.level} {args.split}", unit="video"):
            seed = train_video_seed(args.seed, index) if args.split == "train" else VAL_SEED_BASE + index
            video = generate_video(args.level, seed, args.frames, (args.size, args.size))
            try:
                write_sequence(target, f"{prefix}-{index:05d}", video, mp4=args.mp4)
            except BaseException:  # Ctrl-C, a full disk: no half-written video is left for a reader to meet
                remove_sequence(target, f"{prefix}-{index:05d}", video.metadata.height)
                raise
            written += 1
    except BaseException as error:
        if replacing:
            shutil.rmtree(target, ignore_errors=True)
        if not isinstance(error, KeyboardInterrupt):
            raise
        kept = (
            f"the dataset in {args.out} is as it was (the new one was not finished)"
            if replacing
            else f"{written} complete video(s) in {args.out} (the one being written was removed); generate again "
            "with --overwrite for the whole dataset"
        )
        print(f"interrupted: {kept}", file=sys.stderr)
        return 130
    if replacing:
        for name in DATASET_FOLDERS:  # only what generate writes; other files in --out stay
            shutil.rmtree(args.out / name, ignore_errors=True)
            if (target / name).exists():
                os.replace(target / name, args.out / name)
        shutil.rmtree(target, ignore_errors=True)
    print(
        f"wrote {args.videos} {args.level} {args.split} video(s) of {args.frames} frames at "
        f"{args.size}x{args.size} to {args.out}; "
        f"read them with --data {shlex.quote(f'davis:{args.out}')}"
    )
    return 0


if __name__ == "__main__":
    from plugins.signals import exit_status_of

    raise SystemExit(exit_status_of(main, "python -m training.datasets"))
