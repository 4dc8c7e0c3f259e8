"""``python -m service.client``: stream a video to a server, write an overlay, per-frame JSON lines and the slots.

Commands::

    stream SOURCE --target HOST:PORT [--out overlay.gif|mp4] [--jsonl results.jsonl] [--slots slots.npz]
        [--model NAME] [--frame-fit stretch|crop|pad] [--live] [--fps F] [--window N] [--max-frames N]
        [--jpeg-quality Q]
    describe --target HOST:PORT
    synth OUT.mp4|OUT.gif [--frames N] [--size S]

SOURCE is a video file, a folder of frames, ``camera:N`` (OpenCV) or ``synthetic:N``. ``stream`` and ``describe``
also take ``--token``/``--token-file`` and ``--tls-ca``, ``--tls-cert``, ``--tls-key``, ``--tls-server-name``.

Each JSON line's ``areas`` (and the ``--slots`` file's) are each slot's share of the whole frame's segmentation;
pixels outside the model's view (255, beside the crop of ``--frame-fit crop``) belong to no slot, so with a crop
the areas sum to the crop's share of the frame, not to 1. The overlay leaves those pixels uncoloured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import grpc
import numpy as np

from plugins.files import check_writable
from service.client.core import Client, StreamError, TlsFiles, check_jpeg_quality, send_while_receiving
from service.client.overlay import OverlayWriter, render_overlay
from service.client.sources import Source, check_source_spec, open_source
from service.client.synthetic import synthetic_clip
from service.client.trajectory import SlotTrajectory
from service.types import (
    CloseReason,
    FrameDropped,
    FrameError,
    FrameFit,
    FrameResponse,
    FrameResult,
    Output,
    StreamClosed,
    StreamOptions,
)

_MASK_LONG_SIDE = 640


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(prog="python -m service.client", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    stream = commands.add_parser("stream", help="stream a video, folder of frames or camera")
    stream.add_argument("source", type=_source_spec, help="video file, folder of images, camera:N or synthetic:N")
    _connection_flags(stream)
    stream.add_argument("--out", type=Path, help="overlay video to write (.gif or .mp4)")
    stream.add_argument("--jsonl", type=Path, help="write one JSON line per frame here ('-': stdout)")
    stream.add_argument(
        "--slots",
        type=Path,
        help="save the slot trajectories here (.npz: frame_index [T], capture_time_ns [T], slot_ids [T, K], slots "
        "[T, K, D], areas [T, K], model_version, frame_fit; see service/client/trajectory.py)",
    )
    stream.add_argument("--model", default="", help="model name (default: the server's default)")
    stream.add_argument(
        "--frame-fit",
        choices=[fit.name.lower() for fit in FrameFit if fit != FrameFit.UNSPECIFIED],
        help="how the server fits frames to the model's input: stretch (whole, aspect ratio not kept), crop (centred "
        "box of the model's aspect ratio, for a model trained with --frame-fit crop; areas then sum to the crop's "
        "share) or pad (centred on grey; the whole frame undistorted) (default: the server's --frame-fit)",
    )
    stream.add_argument("--live", action="store_true", help="live mode: drop stale frames instead of queueing")
    stream.add_argument("--fps", type=_positive_float, help="send at most this many frames per second (> 0)")
    stream.add_argument("--window", type=_positive_int, default=4, help="frames in flight (>= 1; default: 4)")
    stream.add_argument("--max-frames", type=_positive_int, help="stop after this many frames (>= 1)")
    stream.add_argument("--jpeg-quality", type=int, help="send frames as JPEG at this quality (default: raw)")

    describe = commands.add_parser("describe", help="print the model card")
    _connection_flags(describe)
    describe.add_argument("--model", default="")

    synth = commands.add_parser("synth", help="write a generated clip of moving shapes")
    synth.add_argument("out", type=Path, help=".mp4 or .gif")
    synth.add_argument("--frames", type=int, default=60, help="frames in the clip (default: 60)")
    synth.add_argument("--size", type=int, default=128, help="square frame size in pixels (default: 128)")
    return parser


def _positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (a rate)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (a count)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _source_spec(text: str) -> str:
    """An argparse type: ``text`` as given, once a ``camera:N`` or ``synthetic:N`` form is checked (a path is
    checked when it is opened)."""
    try:
        check_source_spec(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="127.0.0.1:50051", help="server host:port")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token", help="bearer token (visible to other users in the process list: prefer a file)")
    token.add_argument("--token-file", type=Path, help="file holding the bearer token (surrounding blanks ignored)")
    parser.add_argument("--tls-ca", type=Path, help="CA certificate: connect with TLS")
    parser.add_argument("--tls-cert", type=Path, help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", type=Path, help="client key (mutual TLS)")
    parser.add_argument(
        "--tls-server-name", help="name to check the server certificate against, when it differs from the target host"
    )


def _client(args: argparse.Namespace) -> Client:
    """The client the connection flags describe.

    Raises:
        ValueError: ``--target`` names a host without a port on a plaintext connection (gRPC would quietly try
            443, the TLS port, where a TLS endpoint behind an ingress is fine).
        OSError: a token or TLS file cannot be read.
    """
    secure = bool(args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name)
    if not secure and re.fullmatch(r"[\w.-]+", args.target):
        raise ValueError(
            f"--target {args.target}: give the server's port too, as in {args.target}:50051 (without one, gRPC "
            "uses 443, the TLS port)"
        )
    tls = None
    if secure:
        tls = TlsFiles(root_ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key, server_name=args.tls_server_name)
    return Client(args.target, token=_token(args), tls=tls)


def _token(args: argparse.Namespace) -> str | None:
    """The bearer token from ``--token`` or ``--token-file``.

    Raises:
        OSError: the token file cannot be read.
        ValueError: the token file is empty.
    """
    if args.token_file is None:
        token: str | None = args.token
        return token
    try:
        token = args.token_file.read_text().strip()
    except OSError as error:
        raise type(error)(error.errno, f"--token-file {args.token_file}: cannot read it: {error.strerror}") from error
    if not token:
        raise ValueError(f"--token-file {args.token_file} is empty")
    return token


def _mask_size(frame: np.ndarray) -> tuple[int, int]:
    height, width = frame.shape[:2]
    scale = min(1.0, _MASK_LONG_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class StreamEnded(Exception):
    """The server ended an accepted stream before answering every frame (a shutdown, an expired stream...).

    Attributes:
        error: the server's error.
        answered: frames answered before it.
        sent: frames sent.
    """

    def __init__(self, error: StreamError, answered: int, sent: int) -> None:
        super().__init__(f"the server ended the stream after {answered} of {sent} frames: {error}")
        self.error = error
        self.answered = answered
        self.sent = sent


async def stream_source(
    args: argparse.Namespace, source: Source, jsonl: _JsonLines, trajectory: SlotTrajectory | None = None
) -> dict[str, Any]:
    """Stream ``source``; write overlay frames and JSON lines, and record the slots in ``trajectory``; return a
    summary.

    The JSON-lines file is opened (and truncated) only once the server has accepted the stream, so a refused
    connection leaves an earlier run's results in place; so is the trajectory file written (when the stream
    ends, however it ends: finished, ended by the server or interrupted, with the results received until then).

    Raises:
        StreamError: the server refused the stream.
        StreamEnded: the server ended it after accepting it (for example on shutdown); the overlay and JSON
            lines keep the answers received until then.
    """
    frames: Iterator[np.ndarray] = source.frames
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{source.description} has no frames")
    fit = FrameFit[args.frame_fit.upper()] if args.frame_fit else FrameFit.UNSPECIFIED
    options = StreamOptions(
        live=args.live,
        outputs=frozenset({Output.SLOTS, Output.SEGMENTATION}),
        mask_size=_mask_size(first),
        frame_fit=fit,
    )
    fps = args.fps or source.fps or 15.0
    writer = OverlayWriter(args.out, fps) if args.out else None
    sent: dict[int, tuple[np.ndarray, float]] = {}
    summary = {"frames": 0, "results": 0, "dropped": 0, "errors": 0}
    counts = {"sent": 0, "all_sent": 0}
    async with _client(args) as client:
        stream = await client.open(options, model=args.model)
        out = jsonl.open()
        if trajectory is not None and stream.opened is not None:
            trajectory.frame_fit = stream.opened.options.frame_fit.name  # the fit the server chose, not asked for
        window = asyncio.Semaphore(args.window)

        async def send_all() -> None:
            frame: np.ndarray | None = first
            interval = 1 / args.fps if args.fps else 0.0
            next_time = time.perf_counter()
            while frame is not None:
                await window.acquire()
                if interval:
                    await asyncio.sleep(max(0.0, next_time - time.perf_counter()))
                    next_time += interval
                index = stream.next_frame_index
                sent[index] = (frame, time.perf_counter())  # before the send: the answer may arrive first
                await stream.send(frame, frame_index=index, jpeg_quality=args.jpeg_quality)
                counts["sent"] += 1
                frame = await asyncio.to_thread(next, frames, None)
            counts["all_sent"] = 1
            await stream.close_writing()

        async def receive_all() -> None:
            while True:
                answer = await stream.receive()
                if isinstance(answer, StreamClosed):
                    # The server closes its streams itself when it shuts down: an error only when frames were
                    # left unanswered or unsent (a drain right after the last answer is not).
                    ended_early = stream.unanswered or not counts["all_sent"]
                    if answer.reason != CloseReason.CLIENT_CLOSED and ended_early:
                        raise StreamError.from_closed(answer, stream.handoff)
                    return
                window.release()
                frame, started = sent.pop(answer.frame_index)
                latency_ms = (time.perf_counter() - started) * 1e3
                _record(answer, frame, latency_ms, summary, writer, out, trajectory)

        try:
            await send_while_receiving(send_all(), receive_all())
        except StreamError as error:
            raise StreamEnded(error, summary["frames"], counts["sent"]) from error
        finally:
            try:
                if writer is not None:
                    await asyncio.to_thread(writer.close)
            finally:  # the slots are saved even when the overlay cannot be finished
                if trajectory is not None:
                    trajectory.save()
    return summary


def _record(
    answer: FrameResponse,
    frame: np.ndarray,
    latency_ms: float,
    summary: dict[str, Any],
    writer: OverlayWriter | None,
    out: TextIO | None,
    trajectory: SlotTrajectory | None = None,
) -> None:
    summary["frames"] += 1
    line: dict[str, Any] = {"frame_index": answer.frame_index, "latency_ms": round(latency_ms, 3)}
    if isinstance(answer, FrameResult) and answer.segmentation is not None:
        summary["results"] += 1
        areas = slot_areas(answer.segmentation, len(answer.slot_ids))  # [K]
        if trajectory is not None:
            trajectory.add(answer, areas)
        line |= {
            "outcome": "result",
            "slot_ids": list(answer.slot_ids),
            "areas": [round(float(area), 5) for area in areas],
            "server_latency_ms": {k: round(v, 3) for k, v in asdict(answer.latency).items() if k != "batch_size"},
            "batch_size": answer.latency.batch_size,
        }
        if writer is not None:
            writer.write(render_overlay(frame, answer.segmentation, answer.slot_ids))
    elif isinstance(answer, FrameDropped):
        summary["dropped"] += 1
        line |= {"outcome": "dropped", "reason": answer.reason.name, "message": answer.message}
    elif isinstance(answer, FrameError):
        summary["errors"] += 1
        line |= {"outcome": "error", "code": answer.code.name, "message": answer.message}
    if out is not None:
        out.write(json.dumps(line) + "\n")


def slot_areas(segmentation: np.ndarray, slots: int) -> np.ndarray:
    """Each slot's share of the whole frame: its pixels in ``segmentation`` over all of them.

    Pixels outside the model's view (:data:`~service.types.OUTSIDE_VIEW`, 255, when ``slots`` <= 255) count in
    the frame but belong to no slot, so with ``FrameFit.CROP`` the shares sum to the crop's share of the frame.

    Args:
        segmentation: uint8 ``[H, W]`` slot indices.
        slots: K.

    Returns:
        float64 ``[K]``.
    """
    counts = np.bincount(segmentation.ravel(), minlength=slots)  # [H, W] -> [H*W]; counts [>= K]
    return counts[:slots] / segmentation.size  # index 255 is beyond the K <= 255 slots: never an area


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    trajectory: SlotTrajectory | None = None
    try:
        if args.command == "synth":
            return _synth(args)
        if args.command == "describe":
            card = asyncio.run(_describe(args))
            print(json.dumps(asdict(card), indent=2))
            return 0
        for path in (args.out, args.jsonl, args.slots):
            if path is not None and str(path) != "-" and not path.parent.is_dir():
                raise FileNotFoundError(f"{path}: the folder {path.parent} does not exist")
        if args.slots is not None:
            _check_slots_path(args.slots)
        if args.jpeg_quality is not None:
            check_jpeg_quality(args.jpeg_quality, "--jpeg-quality")
        source = open_source(args.source, args.max_frames)
        jsonl = _JsonLines(args.jsonl)
        trajectory = SlotTrajectory(args.slots) if args.slots is not None else None
        try:
            summary = asyncio.run(stream_source(args, source, jsonl, trajectory))
        except KeyboardInterrupt:  # the way to stop a camera: the overlay, JSON lines and slots so far are kept
            print("interrupted" + _slots_note(trajectory), file=sys.stderr)
            return 130
        finally:
            jsonl.close()
        print(
            f"{summary['frames']} frames from {source.description}: {summary['results']} results, "
            f"{summary['dropped']} dropped, {summary['errors']} errors"
            + (f"; overlay written to {args.out}" if args.out else "")
            + _slots_note(trajectory),
            file=sys.stderr,
        )
        return 0 if summary["errors"] == 0 else 1
    except StreamEnded as ended:
        print(f"error: {ended}" + _slots_note(trajectory), file=sys.stderr)
        return 1
    except StreamError as error:
        if error.status == grpc.StatusCode.UNAVAILABLE and error.code is None and error.closed is None:
            # no slotstream answer: the transport failed (nothing listening, a name that does not resolve)
            print(f"error: cannot reach a server at {args.target}: {error.message}", file=sys.stderr)
        else:
            print(f"server: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other command-line tools do
        with contextlib.suppress(OSError):  # no second error when Python flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, ValueError, ImportError) as error:  # OSError: a missing or unreadable file, a corrupt image
        print(f"error: {_error_text(error)}", file=sys.stderr)
        return 2


def _check_slots_path(path: Path) -> None:
    """Refuse a ``--slots`` path that could not be written when the stream ends (an hour of slots would be lost).

    Raises:
        ValueError: ``path`` does not end in ``.npz`` or is a folder.
        OSError: no file can be written in its folder (the message names the folder).
    """
    if path.suffix.lower() != ".npz":
        raise ValueError(f"--slots {path}: name a .npz file")
    if path.is_dir():
        raise ValueError(f"--slots {path}: that is a folder; name a file in it")
    try:
        check_writable(path.parent)
    except OSError as error:
        raise OSError(f"--slots {path}: cannot write in {path.parent} ({error.strerror or error})") from error


def _slots_note(trajectory: SlotTrajectory | None) -> str:
    """``"; slots of N frames saved to PATH"`` once the trajectory file is written, else nothing."""
    if trajectory is None or not trajectory.saved:
        return ""
    return f"; slots of {len(trajectory)} frames saved to {trajectory.path}"


def _error_text(error: Exception) -> str:
    """``error``'s message, without the ``[Errno N]`` that ``OSError`` puts before it."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return str(error)


class _JsonLines:
    """Where ``--jsonl`` lines go: nowhere, stdout (``-``) or a file opened on demand."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: TextIO | None = None

    def open(self) -> TextIO | None:
        """Open (truncating a file) and return the sink; ``None`` when no ``--jsonl`` was given."""
        if self.path is None:
            return None
        if str(self.path) == "-":
            return sys.stdout
        if self._file is None:
            self._file = self.path.open("w")
        return self._file

    def close(self) -> None:
        """Close the file, if one was opened."""
        if self._file is not None:
            self._file.close()
            self._file = None


async def _describe(args: argparse.Namespace) -> Any:
    async with _client(args) as client:
        return await client.describe(args.model)


def _synth(args: argparse.Namespace) -> int:
    if args.frames < 1 or args.size < 2:  # video encoders need sides of at least 2 pixels
        raise ValueError(f"need --frames >= 1 and --size >= 2, got {args.frames} and {args.size}")
    if not args.out.resolve().parent.is_dir():
        raise FileNotFoundError(f"{args.out}: the folder {args.out.resolve().parent} does not exist")
    clip = synthetic_clip(args.frames, (args.size, args.size))
    with OverlayWriter(args.out, fps=15.0, what="clip") as writer:
        for frame in clip:
            writer.write(frame)
    print(f"wrote {len(clip)} frames to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
