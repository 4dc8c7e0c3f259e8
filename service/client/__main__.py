"""``python -m service.client``: stream a video to a server, write an overlay, per-frame JSON lines and the slots.

Commands::

    stream SOURCE --target HOST:PORT [--out overlay.gif|mp4] [--jsonl results.jsonl] [--slots slots.npz]
        [--model NAME] [--frame-fit stretch|crop|pad] [--live] [--fps F] [--window N] [--max-frames N]
        [--jpeg-quality Q] [--reconnect N [--resume-window-s S]]
    describe --target HOST:PORT
    synth OUT.mp4|OUT.gif [--frames N] [--size S]

SOURCE is a video file, a folder of frames, ``camera:N`` (OpenCV) or ``synthetic:N``. ``stream`` and ``describe``
also take ``--token``/``--token-file`` and ``--tls-ca``, ``--tls-cert``, ``--tls-key``, ``--tls-server-name``.

Each JSON line's ``areas`` (and the ``--slots`` file's) are each slot's share of the whole frame's segmentation;
pixels outside the model's view (255, beside the crop of ``--frame-fit crop``) belong to no slot, so with a crop
the areas sum to the crop's share of the frame, not to 1. The overlay leaves those pixels uncoloured.

Each frame is sent with a capture time: for a source with its own timing (a video file's presentation timestamps, a
synthetic clip's or a folder's frame rate) the wall-clock time the stream started plus the frame's time on that
timeline, so the differences are the source's own; for a camera (and a folder without ``--fps``) the wall-clock time
it was captured (see :mod:`service.client.trajectory`). A JSON line's ``latency_ms`` is the time from just before
the frame was encoded and sent to the arrival of its answer; the overlay is rendered and written in a worker thread,
off that path.

``--reconnect N`` opens the stream with a resume window (``--resume-window-s``, 30 s unless given; the server caps
it) and, when the connection drops or the server shuts down, continues it with ``ClientStream.reconnect`` (up to N
tries after each failure, waiting a little longer before each): the frames continue where they stopped, and the
overlay, JSON lines and slots get every answered frame once.

Ctrl-C or SIGTERM stops a run, keeping the overlay, JSON lines and slots of the frames answered until then (exit
status 130).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from plugins.files import check_writable
from service.client.core import Client, StreamError, TlsFiles, check_jpeg_quality, send_while_receiving
from service.client.overlay import OverlayWriter, render_overlay
from service.client.sources import Source, SourceFrame, check_source_spec, open_source
from service.client.synthetic import synthetic_clip
from service.client.trajectory import SlotTrajectory, slot_areas, slot_geometry
from service.errors import ErrorCode
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
DEFAULT_RESUME_WINDOW_S = 30.0
"""The resume window ``--reconnect`` asks for unless ``--resume-window-s`` is given."""
RECONNECT_BACKOFF_S = (0.25, 4.0)
"""``--reconnect`` waits the first before its first try after a failure, twice as long before each next, at most
the second."""
OVERLAY_QUEUE = 16
"""Overlay frames that may wait for the worker thread that renders and writes them; when it falls that far
behind, the receive loop waits for it (and the stream slows to its pace)."""


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
        "[T, K, D], areas [T, K], frame_size [T, 2], centroids [T, K, 2], boxes [T, K, 4], fps, capture_clock, "
        "model_version, frame_fit; see service/client/trajectory.py)",
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
    stream.add_argument(
        "--fps",
        type=_positive_float,
        help="send at most this many frames per second (> 0); also the frame rate of a folder's or a synthetic "
        "clip's capture times",
    )
    stream.add_argument("--window", type=_positive_int, default=4, help="frames in flight (>= 1; default: 4)")
    stream.add_argument("--max-frames", type=_positive_int, help="stop after this many frames (>= 1)")
    stream.add_argument("--jpeg-quality", type=int, help="send frames as JPEG at this quality (default: raw)")
    stream.add_argument(
        "--reconnect",
        type=_count_arg,
        default=0,
        metavar="N",
        help="when the connection drops or the server shuts down, continue the stream where it stopped, trying up "
        "to N times after each failure (>= 0; default: 0, the run stops)",
    )
    stream.add_argument(
        "--resume-window-s",
        type=_positive_float,
        metavar="S",
        help=f"with --reconnect: how long the server keeps the stream's state for it after the connection drops "
        f"(> 0; the server caps it; default: {DEFAULT_RESUME_WINDOW_S:g})",
    )

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


def _count_arg(text: str) -> int:
    """An argparse type: a whole number >= 0 (a number of tries)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
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
    options: list[tuple[str, int]] = []
    if getattr(args, "reconnect", 0):  # the channel's own reconnection waits no longer than --reconnect's tries
        longest_ms = round(RECONNECT_BACKOFF_S[1] * 1e3)
        options = [
            ("grpc.initial_reconnect_backoff_ms", round(RECONNECT_BACKOFF_S[0] * 1e3)),
            ("grpc.min_reconnect_backoff_ms", round(RECONNECT_BACKOFF_S[0] * 1e3)),
            ("grpc.max_reconnect_backoff_ms", longest_ms),
        ]
    return Client(args.target, token=_token(args), tls=tls, channel_options=options)


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
    """An accepted stream ended before every frame was answered, and the run stopped: the server ended it (a
    shutdown, an expired stream...), or the connection to it was lost (and ``--reconnect`` could not continue it).

    Attributes:
        error: why the stream ended.
        answered: frames answered before it.
        sent: frames sent.
        target: the server's address.
        tries: reconnection tries made after the last failure (0 without ``--reconnect``).
        retry_error: why the last try failed, when one was made.
    """

    def __init__(
        self,
        error: StreamError,
        answered: int,
        sent: int,
        target: str,
        tries: int = 0,
        retry_error: StreamError | None = None,
    ) -> None:
        self.error = error
        self.answered = answered
        self.sent = sent
        self.target = target
        self.tries = tries
        self.retry_error = retry_error
        super().__init__(self._text())

    def _text(self) -> str:
        error, counts = self.error, f"{self.answered} of {self.sent} frames"
        if error.connection_lost:
            what = f"the connection to the server at {self.target} was lost after {counts} were answered"
            what += f" ({error.status.name}: {error.message})"
            advice = "with --reconnect N a run continues its stream after such a drop"
        elif error.code == ErrorCode.SHUTTING_DOWN:
            what = f"the server at {self.target} shut down and ended the stream after answering {counts}"
            advice = (
                f"run the command again for a new stream; with --reconnect N a run continues its stream through a "
                f"shutdown, on the server that then answers at {self.target}"
            )
        else:
            what, advice = f"the server ended the stream after {counts}: {error}", ""
        if self.tries:
            what += f"; {self.tries} {'try' if self.tries == 1 else 'tries'} to continue it failed"
            if self.retry_error is not None:
                what += f" (last: {self.retry_error})"
            advice = ""
        return f"{what}; the run stopped" + (f" ({advice})" if advice else "")


def worth_reconnecting(error: StreamError) -> bool:
    """Whether ``--reconnect`` tries to continue a stream after ``error``: the connection was lost, or the server is
    shutting down or not ready yet (another server may take over the target, and a drain hands the state over)."""
    return error.connection_lost or error.code in (ErrorCode.SHUTTING_DOWN, ErrorCode.NOT_READY)


class _FrameFeed:
    """A source's frames, read one at a time in a worker thread (a camera or decoder may block).

    :meth:`current` returns the same frame until :meth:`advance`, and a read goes on when the task waiting for it
    is cancelled (a lost connection restarts the sending loop), so no frame is lost or read twice.
    """

    def __init__(self, first: SourceFrame, frames: Iterator[SourceFrame]) -> None:
        self._frames = frames
        self._current: SourceFrame | None = first
        self._read: asyncio.Future[SourceFrame | None] | None = None
        self._ended = False

    async def current(self) -> SourceFrame | None:
        """The next frame to send; ``None`` once the source has no more."""
        if self._current is None and not self._ended:
            if self._read is None:
                self._read = asyncio.ensure_future(asyncio.to_thread(next, self._frames, None))
                self._read.add_done_callback(_retrieve)
            frame = await asyncio.shield(self._read)
            self._read = None
            self._current = frame
            self._ended = frame is None
        return self._current

    def advance(self) -> None:
        """The current frame was sent: the next :meth:`current` reads the one after it."""
        self._current = None


class _OverlayWorker:
    """Renders overlay frames and writes them with ``writer`` in a worker thread, in the order given, so that the
    receive loop (and the latency it measures) never waits for them; at most :data:`OVERLAY_QUEUE` frames wait.

    A failure to render or write is raised by the next :meth:`put` and by :meth:`close` (later frames are
    dropped), so it stops the run as it would if the frames were written in the loop.
    """

    def __init__(self, writer: OverlayWriter) -> None:
        self._writer = writer
        self._queue: asyncio.Queue[tuple[np.ndarray, np.ndarray, tuple[int, ...]] | None] = asyncio.Queue(
            OVERLAY_QUEUE
        )
        self._error: BaseException | None = None
        self._task = asyncio.ensure_future(self._run())

    async def put(self, frame: np.ndarray, segmentation: np.ndarray, slot_ids: tuple[int, ...]) -> None:
        """Queue one frame's overlay (waiting while the queue is full).

        Raises:
            Exception: what rendering or writing an earlier frame raised.
        """
        if self._error is not None:
            raise self._error
        await self._queue.put((frame, segmentation, slot_ids))

    async def close(self) -> None:
        """Write the frames still queued, then finish the file.

        Raises:
            Exception: what rendering or writing a frame, or finishing the file, raised.
        """
        await self._queue.put(None)
        await asyncio.shield(self._task)
        if self._error is not None:
            raise self._error
        await asyncio.to_thread(self._writer.close)

    def _write(self, frame: np.ndarray, segmentation: np.ndarray, slot_ids: tuple[int, ...]) -> None:
        self._writer.write(render_overlay(frame, segmentation, slot_ids))

    async def _run(self) -> None:
        while (item := await self._queue.get()) is not None:
            if self._error is None:  # after a failure the queue is only emptied, so put() never waits forever
                try:
                    await asyncio.to_thread(self._write, *item)
                except Exception as error:
                    self._error = error


async def stream_source(
    args: argparse.Namespace, source: Source, jsonl: _JsonLines, trajectory: SlotTrajectory | None = None
) -> dict[str, Any]:
    """Stream ``source``; write overlay frames and JSON lines, and record the slots in ``trajectory``; return a
    summary.

    The JSON-lines file is opened (and truncated) only once the server has accepted the stream, so a refused
    connection leaves an earlier run's results in place; so is the trajectory file written (when the stream
    ends, however it ends: finished, ended by the server or interrupted, with the results received until then).

    With ``args.reconnect`` (``--reconnect N``) a lost connection or a server shutdown is followed by up to N
    :meth:`ClientStream.reconnect` tries, and the stream goes on where it stopped.

    Raises:
        StreamError: the server refused the stream.
        StreamEnded: the server ended it after accepting it (for example on shutdown), or the connection was lost,
            and it could not be continued; the overlay and JSON lines keep the answers received until then.
    """
    first = next(source.frames, None)
    if first is None:
        raise ValueError(f"{source.description} has no frames")
    feed = _FrameFeed(first, source.frames)
    fit = FrameFit[args.frame_fit.upper()] if args.frame_fit else FrameFit.UNSPECIFIED
    resume_window_s = (args.resume_window_s or DEFAULT_RESUME_WINDOW_S) if args.reconnect else 0.0
    options = StreamOptions(
        live=args.live,
        outputs=frozenset({Output.SLOTS, Output.SEGMENTATION}),
        mask_size=_mask_size(first.image),
        frame_fit=fit,
        resume_window_s=resume_window_s,
    )
    fps = args.fps or source.fps or 15.0
    writer = OverlayWriter(args.out, fps) if args.out else None
    sent: dict[int, tuple[np.ndarray, float]] = {}
    summary = {"frames": 0, "results": 0, "dropped": 0, "errors": 0}
    counts = {"sent": 0, "all_sent": 0}
    if trajectory is not None:
        trajectory.fps = source.fps or math.nan
        trajectory.capture_clock = source.clock
    async with _client(args) as client:
        stream = await client.open(options, model=args.model)
        out = jsonl.open()
        if trajectory is not None and stream.opened is not None:
            trajectory.frame_fit = stream.opened.options.frame_fit.name  # the fit the server chose, not asked for
        if args.reconnect and stream.opened is not None and stream.opened.options.resume_window_s <= 0:
            print(
                "warning: the server keeps no resume window (its --max-resume-window-s is 0): --reconnect can only "
                "continue this stream after a shutdown, from the state the server hands over",
                file=sys.stderr,
            )
        overlay = _OverlayWorker(writer) if writer is not None else None
        window = asyncio.Semaphore(args.window)
        interval = 1 / args.fps if args.fps else 0.0
        pacing = {"next": time.perf_counter()}
        anchor_ns = time.time_ns()  # the stream's start on the wall clock: capture times are on it

        async def send_all() -> None:
            while (item := await feed.current()) is not None:
                await window.acquire()
                index = stream.next_frame_index
                try:
                    if interval:
                        await asyncio.sleep(max(0.0, pacing["next"] - time.perf_counter()))
                        pacing["next"] += interval
                    capture_ns = anchor_ns + item.time_ns if source.own_timeline else item.time_ns
                    sent[index] = (item.image, time.perf_counter())  # before the send: the answer may arrive first
                    await stream.send(
                        item.image, frame_index=index, capture_time_ns=capture_ns, jpeg_quality=args.jpeg_quality
                    )
                finally:
                    if stream.next_frame_index > index:  # recorded: sent, or re-sent by reconnect()
                        feed.advance()
                        counts["sent"] += 1
                    else:  # refused or cancelled before it counted as sent: it goes out next time
                        sent.pop(index, None)
                        window.release()
            counts["all_sent"] = 1
            await stream.close_writing()

        async def receive_all() -> None:
            while True:
                answer = await stream.receive()
                received = time.perf_counter()
                if isinstance(answer, StreamClosed):
                    # The server closes its streams itself when it shuts down: an error only when frames were
                    # left unanswered or unsent (a drain right after the last answer is not).
                    ended_early = stream.unanswered or not counts["all_sent"]
                    if answer.reason != CloseReason.CLIENT_CLOSED and ended_early:
                        raise StreamError.from_closed(answer, stream.handoff)
                    return
                window.release()
                frame, started = sent.pop(answer.frame_index)
                await _record(answer, frame, (received - started) * 1e3, summary, overlay, out, trajectory)

        async def continue_after(error: StreamError) -> None:
            """Reconnect with up to ``args.reconnect`` tries; raise :class:`StreamEnded` when none succeeds."""
            last: StreamError = error
            tries = 0
            while tries < args.reconnect and worth_reconnecting(last):
                tries += 1
                wait_s = min(RECONNECT_BACKOFF_S[0] * 2 ** (tries - 1), RECONNECT_BACKOFF_S[1])
                print(
                    f"{_interruption(last, args.target)} after {summary['frames']} answered frames; reconnecting in "
                    f"{wait_s:g} s (try {tries} of {args.reconnect})",
                    file=sys.stderr,
                )
                await asyncio.sleep(wait_s)
                try:
                    opened = await stream.reconnect()
                except StreamError as failure:
                    last = failure
                    continue
                after = "its start" if opened.last_frame_index is None else f"frame {opened.last_frame_index}"
                print(f"continued the stream ({opened.kind.name.lower()}) after {after}", file=sys.stderr)
                resent, now = set(stream.unanswered), time.perf_counter()
                for index in list(sent):
                    if index in resent:  # re-sent: its latency counts from now
                        sent[index] = (sent[index][0], now)
                    else:  # already in the state the stream continues from, and never to be answered
                        sent.pop(index)
                        window.release()
                return
            raise StreamEnded(
                error, summary["frames"], counts["sent"], args.target, tries, last if tries else None
            ) from error

        try:
            while True:
                try:
                    await send_while_receiving(send_all(), receive_all())
                    break
                except StreamError as error:
                    if not args.reconnect or not worth_reconnecting(error):
                        raise StreamEnded(error, summary["frames"], counts["sent"], args.target) from error
                    await continue_after(error)
        finally:
            try:
                if overlay is not None:
                    await overlay.close()
            finally:  # the slots are saved even when the overlay cannot be finished
                if trajectory is not None:
                    trajectory.save()
    return summary


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a read's outcome as seen; its error, if any, reaches the next :meth:`_FrameFeed.current`."""
    if not future.cancelled():
        future.exception()


def _interruption(error: StreamError, target: str) -> str:
    """What interrupted a stream, in a few words."""
    if error.connection_lost:
        return f"lost the connection to {target} ({error.status.name}: {error.message})"
    if error.code == ErrorCode.SHUTTING_DOWN:
        return f"the server at {target} is shutting down"
    return f"the stream was interrupted ({error})"


async def _record(
    answer: FrameResponse,
    frame: np.ndarray,
    latency_ms: float,
    summary: dict[str, Any],
    overlay: _OverlayWorker | None,
    out: TextIO | None,
    trajectory: SlotTrajectory | None = None,
) -> None:
    summary["frames"] += 1
    line: dict[str, Any] = {"frame_index": answer.frame_index, "latency_ms": round(latency_ms, 3)}
    if isinstance(answer, FrameResult) and answer.segmentation is not None:
        summary["results"] += 1
        areas = slot_areas(answer.segmentation, len(answer.slot_ids))  # [K]
        if trajectory is not None:
            geometry = slot_geometry(answer.segmentation, len(answer.slot_ids), (frame.shape[0], frame.shape[1]))
            trajectory.add(answer, areas, geometry)
        line |= {
            "outcome": "result",
            "slot_ids": list(answer.slot_ids),
            "areas": [round(float(area), 5) for area in areas],
            "server_latency_ms": {k: round(v, 3) for k, v in asdict(answer.latency).items() if k != "batch_size"},
            "batch_size": answer.latency.batch_size,
        }
        if overlay is not None:
            await overlay.put(frame, answer.segmentation, answer.slot_ids)
    elif isinstance(answer, FrameDropped):
        summary["dropped"] += 1
        line |= {"outcome": "dropped", "reason": answer.reason.name, "message": answer.message}
    elif isinstance(answer, FrameError):
        summary["errors"] += 1
        line |= {"outcome": "error", "code": answer.code.name, "message": answer.message}
    if out is not None:
        out.write(json.dumps(line) + "\n")


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
        if args.resume_window_s is not None and not args.reconnect:
            raise ValueError("--resume-window-s only matters with --reconnect N (N >= 1): add it, or leave both out")
        source = open_source(args.source, args.max_frames, args.fps)
        jsonl = _JsonLines(args.jsonl)
        trajectory = SlotTrajectory(args.slots) if args.slots is not None else None
        try:
            with _sigterm_as_interrupt():
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
        if error.connection_lost:
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


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM (a supervisor stopping the client) raise ``KeyboardInterrupt`` as Ctrl-C does, so a run stopped
    either way keeps what it has; the previous handler is restored after. Outside the main thread, where no signal
    handler can be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
