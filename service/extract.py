"""``python -m service.extract SOURCE... --out DIR``: slot trajectories of videos, without a server.

Runs a model's engine in this process over each source (a video file, a folder of images, ``synthetic:N``) the
way a stream of the service runs it: the frames are sent as the command-line client sends them (raw RGB), decoded
and fitted by the server's own code, stepped through the recurrent model one by one, and measured on segmentations
of the size the client asks for. Each source's trajectory is written to ``DIR/<name>.npz`` in the format of
``python -m service.client stream --slots`` (:mod:`service.client.trajectory`), so a dataset can be turned into
training data for a world model without a server, and the files equal what streaming the same source would give
(up to float error).

Examples::

    python -m service.extract videos/*.mp4 --out trajectories/
    python -m service.extract clip_folder/ --out trajectories/ --model runs/my_model/model --frame-fit crop
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugins.extras import require_extra

if __name__ == "__main__":  # before the imports that need the extra: one line instead of a traceback
    require_extra("server", "python -m service.extract")

from tqdm import tqdm

from plugins.files import output_folder_problem, user_path
from plugins.registry import RegistryError
from service.cli_limits import FPS_LIMITS, START_TIME_NEEDS_TIMELINE, check_fps, epoch_ns
from service.client.segmentation_geometry import slot_geometry, trajectory_mask_size
from service.client.sources import Source, check_source_spec, open_source, source_path
from service.client.trajectory import END, INTERRUPTED, MAX_FRAMES, frame_refused, source_error
from service.client.trajectory_writer import SlotTrajectory
from service.config import DEFAULT_MODEL_DIR, FRAME_FITS
from service.engine import BackendUnavailable, Engine, load_engine
from service.errors import ErrorCode, FrameRejected
from service.local_stream import LocalStream
from service.session_limits import SessionLimits
from service.types import FrameFit, FrameResult, LatencyBreakdown


class ExtractionInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, where it raises ``KeyboardInterrupt``) stopped a source; the rows before it were saved.

    Attributes:
        path: the ``.npz`` written, or ``None`` when no frame had been extracted yet.
        frames: its rows.
    """

    def __init__(self, path: Path | None, frames: int) -> None:
        super().__init__(f"interrupted after {frames} frames")
        self.path = path
        self.frames = frames


class ExtractionFailed(ValueError):
    """A source failed partway (a frame that cannot be decoded or read, a frame that is no image); the rows of the
    frames before it were saved, as for Ctrl-C. The message is the failure's, then what was saved.

    Attributes:
        path: the ``.npz`` written, or ``None`` when no row had been made yet (or the file could not be written).
        frames: its rows.
    """

    def __init__(self, error: Exception, path: Path | None, frames: int, saved: str) -> None:
        super().__init__(f"{error}; {saved}")
        self.path = path
        self.frames = frames


@dataclass(frozen=True)
class Extracted:
    """One source's trajectory file.

    Attributes:
        path: the ``.npz`` written.
        frames: rows in it (the source's frames less the refused ones).
        seconds: wall time of the source's frames, reading and writing included.
        refused: ``(frame index, why)`` of each frame the service would have answered with an error (a frame
            beyond its pixel limits, outputs that are not finite): no row, and the state stays that of the
            frame before, as in a stream.
    """

    path: Path
    frames: int
    seconds: float
    refused: tuple[tuple[int, str], ...] = ()


def trajectory_name(spec: str) -> str:
    """The file name (without ``.npz``) a source's trajectory gets: a video file's name without its suffix
    (``clips/a.mp4`` -> ``a``), a folder's name whole (``frames/run3/`` -> ``run3``, ``clip.v2/`` -> ``clip.v2``,
    ``.`` -> the current folder's name), ``synthetic_60`` for ``synthetic:60``."""
    if spec.startswith("synthetic:"):
        return "synthetic_" + (spec.removeprefix("synthetic:") or "60")
    path = source_path(spec)
    if path.is_dir():
        return path.resolve().name or "root"
    return path.stem


def extract(
    engine: Engine,
    source: Source,
    spec: str,
    fit: FrameFit,
    path: Path,
    *,
    progress: bool = True,
    start_time_ns: int | None = None,
) -> Extracted:
    """Run ``engine`` over ``source`` frame by frame and write the trajectory to ``path``.

    Capture times are on the source's own timeline from the moment the source is started, as the client stamps
    them, or from ``start_time_ns`` when given (the recording's start, so the rows line up with what was recorded
    beside it); ``capture_clock`` says which clock. Slot ids are ``0 .. K - 1``, as a stream's; the segmentation size
    is chosen from the first frame, as the client asks for it at the stream's open. A frame the server would
    refuse (beyond its default ``--max-image-pixels``, or outputs that are not finite) gets no row and leaves the
    state as it was, as in a stream, and is listed in the file's ``missing_*`` arrays (``refused: <CODE>``). The
    file says how the source ended (``end_reason`` and ``complete``: the source's end, ``--max-frames``, Ctrl-C, or a
    frame that could not be read) and which source frame each row is (``source_frame``).

    Args:
        engine: a loaded engine.
        source: the frames (:func:`service.client.sources.open_source`).
        spec: how the source was named, saved as the file's ``source``.
        fit: how frames are fitted to the model (not ``UNSPECIFIED``).
        path: the ``.npz`` to write (replaced whole when it exists).
        progress: show a progress bar on stderr.
        start_time_ns: the wall-clock time (ns since the Unix epoch) of the source's first frame, for a source on
            its own timeline (refused for one on the wall clock); ``None``: the moment the extraction starts.

    Raises:
        ValueError: ``start_time_ns`` for a source on the wall clock, the source has no frames, or the service would
            refuse every one of them (the file is written without rows, with K, D and the model version, as a
            stream's would be).
        ExtractionFailed: a frame cannot be read or decoded, or is not an image the service would take (the
            message names it, and says where the rows of the frames before it were saved).
        OSError: the file cannot be written.
        ExtractionInterrupted: Ctrl-C; the frames extracted until then are saved first.
    """
    if start_time_ns is not None and not source.own_timeline:
        raise ValueError(START_TIME_NEEDS_TIMELINE)
    started = time.perf_counter()
    card = engine.card  # K, D and the version: a file without rows (every frame refused) still says them
    trajectory = SlotTrajectory(
        path,
        slot_count=card.num_slots,
        slot_width=card.slot_dim,
        model_version=card.version,
        frame_fit=fit.name,
        fps=source.fps or float("nan"),
        capture_clock=source.clock,
        source=spec,
    )
    refused: list[tuple[int, str]] = []
    with tqdm(desc=spec, unit="frame", total=None, disable=not progress, leave=False) as bar:
        try:
            anchor_ns = time.time_ns() if start_time_ns is None else start_time_ns
            _extract_frames(engine, source, spec, fit, trajectory, refused, bar, anchor_ns)
        except KeyboardInterrupt:
            if not len(trajectory):
                raise ExtractionInterrupted(None, 0) from None
            trajectory.end_reason = INTERRUPTED
            trajectory.save()
            raise ExtractionInterrupted(path, len(trajectory)) from None
        except (ValueError, OSError) as error:  # reading the source failed partway: keep the rows made before
            trajectory.end_reason = source_error(error)
            raise _failed_partway(error, trajectory) from error
    if not len(trajectory) and not refused:
        raise ValueError(f"{spec}: {source.description} has no frames")
    trajectory.end_reason = MAX_FRAMES if source.limit_reached else END
    trajectory.save()
    if not len(trajectory):  # a file without rows is no trajectory: the source failed
        index, why = refused[0]
        others = f" (and the {len(refused) - 1} after it)" if len(refused) > 1 else ""
        raise ValueError(
            f"{spec}: no frame has a row, every one was refused{others}: frame {index}: {why}; {path} holds no rows "
            "(only K, D and the model version)"
        )
    return Extracted(path, len(trajectory), time.perf_counter() - started, tuple(refused))


def _failed_partway(error: Exception, trajectory: SlotTrajectory) -> ExtractionFailed:
    """Save the rows ``trajectory`` holds (if any) after ``error`` stopped its source, and say so in the error."""
    if not len(trajectory):
        return ExtractionFailed(error, None, 0, "no frame extracted, nothing written")
    try:
        trajectory.save()
    except OSError as save_error:
        reason = save_error.strerror or str(save_error)
        return ExtractionFailed(
            error, None, 0, f"the slots of the {len(trajectory)} frames before it could not be saved ({reason})"
        )
    return ExtractionFailed(
        error,
        trajectory.path,
        len(trajectory),
        f"slots of the {len(trajectory)} frames before it saved to {trajectory.path}",
    )


def _extract_frames(
    engine: Engine,
    source: Source,
    spec: str,
    fit: FrameFit,
    trajectory: SlotTrajectory,
    refused: list[tuple[int, str]],
    bar: tqdm[Any],
    anchor_ns: int,
) -> None:
    """The frame loop of :func:`extract`: each frame's row goes to ``trajectory``, each refused frame to
    ``refused`` and to ``trajectory``'s missing frames, and ``bar`` counts them; own-timeline capture times count
    from ``anchor_ns``."""
    card = engine.card
    slot_ids = tuple(range(card.num_slots))
    no_latency = LatencyBreakdown(0.0, 0.0, 0.0, 0.0, 0.0, 1)
    stream = LocalStream(engine, fit)  # with the server's default limits
    mask_size: tuple[int, int] | None = None
    for index, frame in enumerate(source.frames):
        bar.update()
        height, width = frame.image.shape[:2]
        mask_size = mask_size or trajectory_mask_size((height, width))
        try:
            out = stream.process(frame.image, mask_size=mask_size)
        except FrameRejected as rejected:
            # the limits are a server's defaults, which this command applies without a flag to change them
            defaults = (
                "" if rejected.code == ErrorCode.INFERENCE_FAILED else " (service.extract applies a server's defaults)"
            )
            refused.append((index, f"{rejected.code}: {rejected.message}{defaults}"))
            trajectory.add_missing(index, frame_refused(rejected.code), frame.source_frame)
            continue
        except ValueError as error:  # not a frame at all: the source is broken
            raise ValueError(f"{spec}: frame {index}: {error}") from error
        geometry = slot_geometry(out.segmentation, card.num_slots, (height, width))
        capture_ns = anchor_ns + frame.time_ns if source.own_timeline else frame.time_ns
        result = FrameResult(
            stream_id="",
            frame_index=index,
            capture_time_ns=capture_ns,
            camera_frame_id="",
            received_time_ns=0,
            completed_time_ns=0,
            model_version=card.version,
            slot_ids=slot_ids,
            latency=no_latency,
            slots=out.slots,
            segmentation=out.segmentation,
        )
        trajectory.add(result, geometry.areas, geometry, frame.source_frame)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.extract",
        description="Write the slot trajectories of videos (files, folders of images, synthetic:N) without a server, "
        "in the format of `python -m service.client stream --slots`: one DIR/<name>.npz per source.",
    )
    parser.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="video file, image file, folder of images or synthetic:N"
    )
    parser.add_argument("--out", type=user_path, required=True, help="folder for the .npz files (created if missing)")
    parser.add_argument(
        "--model", type=user_path, default=DEFAULT_MODEL_DIR, help="model folder (default: the embedded default model)"
    )
    parser.add_argument("--backend", default="torch", help="torch or onnx (an export folder) (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: %(default)s)")
    parser.add_argument(
        "--frame-fit",
        choices=FRAME_FITS,
        default="auto",
        help="how frames are fitted to the model; auto: as the server does by default (the model's recorded fit, "
        "else stretch) (default: %(default)s)",
    )
    parser.add_argument("--max-frames", type=int, help="at most the first N frames of each source (default: all)")
    parser.add_argument(
        "--fps", type=float, help=f"the frame rate of a folder's or a synthetic clip's timeline: {FPS_LIMITS}"
    )
    parser.add_argument(
        "--start-time-ns",
        type=epoch_ns,
        metavar="NS",
        help="the wall-clock time of each source's first frame, in ns since the Unix epoch (the recording's start, "
        "so the capture times line up with what was recorded beside it; a video file, a synthetic clip, or a "
        "folder or image file with --fps) (default: when the extraction starts)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace .npz files that exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _planned_paths(sources: Sequence[str], out: Path, overwrite: bool) -> list[Path]:
    """Each source's file, checked before any work: no two sources may share a name, and without ``overwrite`` no
    file may exist."""
    paths = [out / f"{trajectory_name(spec)}.npz" for spec in sources]
    seen: dict[Path, str] = {}
    for spec, path in zip(sources, paths, strict=True):
        if path in seen:
            raise ValueError(f"{seen[path]} and {spec} would both be written to {path}: extract them into two folders")
        seen[path] = spec
        if path.exists() and not overwrite:
            raise ValueError(f"{path} exists: pass --overwrite to replace it, or choose another --out")
    return paths


def _check_out_folder(out: Path) -> None:
    """Refuse an ``--out`` the trajectories could not be written into, before any source is read (each file is
    written when its source ends; the folder is made once a source opens).

    Raises:
        ValueError: naming the problem (:func:`plugins.files.output_folder_problem`).
    """
    if (problem := output_folder_problem(out)) is not None:
        raise ValueError(f"--out {out}: {problem}")


def _report_failed(spec: str, error: Exception) -> None:
    """Print why source ``spec`` failed, naming it unless the message does already (most do)."""
    where = "" if str(error).startswith(spec) else f"{spec}: "
    print(f"slotstream extract: {where}{error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Extract every source's trajectory; returns the exit status (2: bad arguments or model, 1: a source failed,
    130: Ctrl-C).

    A source that fails (unreadable, a frame that cannot be read or decoded, every frame refused) is reported and
    the others are still extracted; files of earlier sources stay written, and so do the rows of a source stopped
    by Ctrl-C or by a frame that cannot be read or decoded (the message says where; the file's ``complete`` is
    false and its ``end_reason`` says why). A frame the service would refuse (beyond its pixel limit, outputs that
    are not finite) gets no row and is reported on stderr, its source still extracted (exit 0), as a stream answers
    it with an error and goes on; a source all of whose frames are refused fails (its file holds no rows).
    A folder read without ``--fps`` is timed by when its files were read (a warning says so, once).
    """
    args = _parser().parse_args(argv)
    try:
        for spec in args.sources:
            check_source_spec(spec)
            if spec.startswith("camera:"):
                raise ValueError(f"{spec}: extract reads recorded sources; stream a camera with service.client")
        if args.max_frames is not None and args.max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
        if args.fps is not None:
            check_fps(args.fps)
        paths = _planned_paths(args.sources, args.out, args.overwrite)
        _check_out_folder(args.out)
        engine = load_engine(args.backend, args.model, name="extract", device=args.device, max_batch_size=1)
    except (ValueError, OSError, BackendUnavailable, RegistryError) as error:  # OSError: missing or unreadable
        print(f"slotstream extract: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("slotstream extract: interrupted while loading the model; nothing written", file=sys.stderr)
        return 130
    fit = FrameFit.named(args.frame_fit) if args.frame_fit != "auto" else SessionLimits().frame_fit_for(engine.card)
    failed = 0
    warned_read_times = False
    for spec, path in zip(args.sources, paths, strict=True):
        try:
            source = open_source(spec, args.max_frames, args.fps, cameras=False)
        except (ValueError, OSError) as error:
            _report_failed(spec, error)
            failed += 1
            continue
        if source.clock == "wall_clock" and not warned_read_times:  # a folder (or an image) without --fps
            warned_read_times = True
            print(
                f"warning: {spec}: without --fps the frames of a folder are timed by when they were read (the "
                "extraction's speed), not by the source's timing: give the rate the frames were taken at with --fps",
                file=sys.stderr,
            )
        try:
            args.out.mkdir(parents=True, exist_ok=True)  # once a source opens: no empty folder when none does
        except OSError as error:
            print(f"slotstream extract: --out {args.out}: cannot make the folder ({error.strerror})", file=sys.stderr)
            return 2
        try:
            done = extract(engine, source, spec, fit, path, progress=not args.quiet, start_time_ns=args.start_time_ns)
        except ExtractionInterrupted as interrupted:
            saved = f"slots of {interrupted.frames} frames saved to {interrupted.path}" if interrupted.path else ""
            print(f"slotstream extract: {spec}: interrupted; {saved or 'no frame extracted'}", file=sys.stderr)
            return 130
        except (ValueError, OSError) as error:
            _report_failed(spec, error)
            failed += 1
            continue
        rate = (done.frames + len(done.refused)) / done.seconds if done.seconds > 0 else float("inf")
        print(f"{spec}: {done.frames} frames -> {done.path} ({rate:.0f} frames/s, frame fit {fit.name})")
        for index, why in done.refused:  # answered with an error by a server too: no row
            print(f"slotstream extract: {spec}: frame {index} has no row: {why}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
