"""``python -m service.client``: stream a video to a server, write an overlay, per-frame JSON lines and the slots.

Commands::

    stream SOURCE --target HOST:PORT [--out overlay.gif|mp4] [--jsonl results.jsonl] [--slots slots.npz]
        [--model NAME] [--frame-fit stretch|crop|pad] [--live] [--max-staleness-s S] [--fps F] [--window N]
        [--max-frames N] [--start-time-ns NS] [--shared-memory]
        [--jpeg-quality Q] [--max-message-bytes N] [--reconnect N [--resume-window-s S]]
    describe --target HOST:PORT
    streams --target HOST:PORT --token-file ADMIN_TOKEN_FILE [--model NAME] [--stream ID] [--json] [--watch S]
    end-stream ID --target HOST:PORT --token-file ADMIN_TOKEN_FILE [--reason TEXT]
    reload --target HOST:PORT --token-file ADMIN_TOKEN_FILE [--model NAME]
    synth OUT.mp4|OUT.gif [--frames N] [--size S]
    to-rosbag SLOTS.npz OUT_BAG [--topic /slotstream/slots] [--frame-id camera] [--storage mcap|sqlite3]

SOURCE is a video file, a folder of frames, ``camera:N`` (OpenCV) or ``synthetic:N``. Every command but ``synth``
and ``to-rosbag`` also takes ``--token``/``--token-file`` and ``--tls-ca``, ``--tls-cert``, ``--tls-key``,
``--tls-server-name``; ``streams``, ``end-stream`` and ``reload`` need an admin token (one of the server's
``--admin-token-file``), not a client's.

Each JSON line's ``areas`` (and the ``--slots`` file's) are each slot's share of the whole frame's segmentation;
pixels outside the model's view (255, beside the crop of ``--frame-fit crop``) belong to no slot, so with a crop
the areas sum to the crop's share of the frame, not to 1. The overlay leaves those pixels uncoloured.

Frames go raw (RGB) unless ``--jpeg-quality Q`` sends them as JPEG; a frame whose raw pixels do not fit one message
of ``--max-message-bytes`` (16 MiB, the server's default: a raw frame of more than about 2360x2360 pixels, 4K
included) is sent as PNG instead, lossless, so its answers (and slots) are those of the raw frame; stderr says so
once.

Each frame is sent with a capture time: for a source with its own timing (a video file's presentation timestamps, a
synthetic clip's or a folder's frame rate) the wall-clock time the stream started plus the frame's time on that
timeline, so the differences are the source's own; for a camera (and a folder without ``--fps``) the wall-clock time
it was captured (see :mod:`service.client.trajectory`). A JSON line's ``latency_ms`` is the time from just before
the frame was encoded and sent to the arrival of its answer; the overlay is rendered and written in a worker thread,
off that path.

``--reconnect N`` opens the stream with a resume window (``--resume-window-s``, 30 s unless given; the server caps
it) and, when the connection drops or the server shuts down, continues it with ``ClientStream.reconnect`` (up to N
tries after each failure, waiting a little longer before each): the frames continue where they stopped, and the
overlay, JSON lines and slots get every answered frame once. The run then also asks for the ``STATE`` output, so the
stream can continue from its latest answer on another server when the first one is lost without a shutdown.

Ctrl-C or SIGTERM stops a run, keeping the overlay, JSON lines and slots of the frames answered until then (exit
status 130 after Ctrl-C, 143 after SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import zipfile
from collections.abc import Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from plugins.cli_help import command_description
from plugins.files import check_writable
from service.cli_limits import START_TIME_NEEDS_TIMELINE, check_frame_side
from service.client.answer_outputs import JsonLines
from service.client.cli_client import client_from_args
from service.client.cli_parser import build_parser
from service.client.encoding import check_jpeg_quality
from service.client.errors import StreamError
from service.client.overlay import OverlayWriter
from service.client.rosbag import RosbagError, check_bag_arguments, write_rosbag
from service.client.sources import open_source, source_path
from service.client.stream_command import StreamEnded, stream_source
from service.client.streams_report import stream_details, streams_json, streams_table
from service.client.synthetic import synthetic_frames
from service.client.trajectory_writer import SlotTrajectory
from service.types import ReloadOutcome

_T = TypeVar("_T")


def _check_outputs_apart(source: str, outputs: dict[str, Path | None]) -> None:
    """Refuse outputs that name the source file (the recording would be replaced while it is read) or each other
    (one would replace the other), links and other spellings of a path included.

    Raises:
        ValueError: naming both flags (or the flag and the source) and the file.
    """
    seen: dict[tuple[int, int] | Path, str] = {}
    source_file = source_path(source)
    if source_file.is_file():
        seen[_file_identity(source_file)] = "the source"
    for flag, path in outputs.items():
        if path is None or str(path) == "-":
            continue
        identity = _file_identity(path)
        if identity in seen:
            raise ValueError(
                f"{flag} {path} is the file of {seen[identity]}: it would be replaced; give {flag} another file"
            )
        seen[identity] = flag


def _file_identity(path: Path) -> tuple[int, int] | Path:
    """What tells files apart: an existing file's device and inode (hard links share them), else its resolved
    path (symbolic links and other spellings resolve alike)."""
    try:
        status = path.stat()
    except OSError:
        return path.resolve()
    return (status.st_dev, status.st_ino)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser(command_description(__doc__)).parse_args(argv)
    trajectory: SlotTrajectory | None = None
    try:
        if args.command == "synth":
            return _synth(args)
        if args.command == "to-rosbag":
            return _to_rosbag(args)
        if args.command == "describe":
            card = asyncio.run(_describe(args))
            print(json.dumps(asdict(card), indent=2))
            return 0
        if args.command == "streams":
            if args.watch is None:
                print(asyncio.run(_streams(args)))
                return 0
            try:
                return 128 + asyncio.run(_watch_streams(args))  # 130 after Ctrl-C, 143 after SIGTERM
            except KeyboardInterrupt:  # Ctrl-C where no handler could be set
                return 130
        if args.command == "end-stream":
            print(asyncio.run(_end_stream(args)))
            return 0
        if args.command == "reload":
            outcome = asyncio.run(_reload(args))
            print(json.dumps(asdict(outcome), indent=2))
            return 0
        outputs = {"--out": args.out, "--jsonl": args.jsonl, "--slots": args.slots}
        for flag, path in outputs.items():
            if path is not None and str(path) != "-":
                _check_output_path(flag, path, replaced=flag == "--slots")
        _check_outputs_apart(args.source, outputs)
        if args.slots is not None and args.slots.suffix.lower() != ".npz":
            raise ValueError(f"--slots {args.slots}: name a .npz file")
        if args.jpeg_quality is not None:
            check_jpeg_quality(args.jpeg_quality, "--jpeg-quality")
        if args.shared_memory and args.jpeg_quality is not None:
            raise ValueError("--shared-memory sends raw frames: leave --jpeg-quality out, or --shared-memory")
        if args.resume_window_s is not None and not args.reconnect:
            raise ValueError("--resume-window-s only matters with --reconnect N (N >= 1): add it, or leave both out")
        source = open_source(args.source, args.max_frames, args.fps)
        if args.start_time_ns is not None and not source.own_timeline:
            raise ValueError(START_TIME_NEEDS_TIMELINE)
        jsonl = JsonLines(args.jsonl)
        trajectory = SlotTrajectory(args.slots) if args.slots is not None else None
        try:
            stopped: list[signal.Signals] = []  # SIGTERM, when it stopped the run
            summary = asyncio.run(_cancelled_by_sigterm(stream_source(args, source, jsonl, trajectory), stopped))
        except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, SIGTERM: what was answered so far is kept
            print("interrupted" + _slots_note(trajectory), file=sys.stderr)
            return 128 + (stopped[0] if stopped else signal.SIGINT)  # 130 after Ctrl-C, 143 after SIGTERM
        finally:
            jsonl.close()
        print(
            f"{summary['frames']} frames from {source.description}: {summary['results']} results, "
            f"{summary['dropped']} dropped, {summary['errors']} errors"
            + _overlay_note(args.out, summary["overlay_frames"])
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
        # the slots are saved however the stream ends (a frame the source could not decode included)
        print(f"error: {_error_text(error)}" + _slots_note(trajectory), file=sys.stderr)
        return 2


async def _cancelled_by_sigterm(run: Coroutine[Any, Any, _T], stopped: list[signal.Signals]) -> _T:
    """Await ``run`` in a task that SIGTERM (a supervisor stopping the client) cancels, as ``asyncio.run`` cancels
    its task on Ctrl-C, appending ``SIGTERM`` to ``stopped`` first (the exit status says which signal stopped the
    run): the run's clean-up (the slots saved, the overlay finished) goes on as for Ctrl-C, and the
    ``CancelledError`` then reaches the caller. Where no handler can be set (another thread, Windows), SIGTERM
    keeps its default action."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    if task is None:
        return await run

    def terminated() -> None:
        stopped.append(signal.SIGTERM)
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, terminated)
    except (NotImplementedError, RuntimeError, ValueError):
        return await run
    try:
        return await run
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _check_output_path(flag: str, path: Path, replaced: bool) -> None:
    """Refuse an output file that could not be written when the stream needs it: an overlay or JSON lines file
    opened after the first answers, slots saved when the stream ends (an hour of them would be lost).

    Args:
        flag: the output's flag, for the messages.
        path: the file.
        replaced: the file is written whole and renamed over ``path`` (``--slots``), so its folder must take a new
            file even where ``path`` exists; otherwise an existing ``path`` is written in place.

    Raises:
        FileNotFoundError: its folder does not exist.
        ValueError: ``path`` or its folder is not what it must be (a folder, a file).
        OSError: the file cannot be written there (the message names the flag, the file and the reason).
    """
    try:
        folder = path.resolve().parent if path.is_symlink() else path.parent  # every output is written through a link
    except RuntimeError:  # a loop of symbolic links
        raise ValueError(f"{flag} {path}: a loop of symbolic links; name a file") from None
    if not folder.exists():
        raise FileNotFoundError(f"{flag} {path}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{flag} {path}: {folder} is a file, not a folder")
    if path.is_dir():
        raise ValueError(f"{flag} {path}: that is a folder; name a file in it")
    if path.exists() and not replaced:
        if not os.access(path, os.W_OK):
            raise OSError(f"{flag} {path}: the file is not writable")
        return
    try:
        check_writable(folder)
    except OSError as error:
        raise OSError(f"{flag} {path}: cannot write in {folder} ({error.strerror or error})") from error


def _overlay_note(out: Path | None, frames: int) -> str:
    """``"; overlay written to PATH"`` when the overlay got frames; that none was written when it got none (no
    frame had a result: the file is neither made nor replaced); nothing without ``--out``."""
    if out is None:
        return ""
    if not frames:
        return f"; no overlay written to {out} (no frame had a result)"
    return f"; overlay written to {out}"


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


async def _describe(args: argparse.Namespace) -> Any:
    async with client_from_args(args) as client:
        return await client.describe(args.model)


async def _streams(args: argparse.Namespace) -> str:
    """What ``streams`` prints: the server's streams as a table (or one stream in full), or as JSON."""
    async with client_from_args(args) as client:
        if args.stream is not None:
            stats = await client.stream_stats(args.stream)
            if args.model and stats.model != args.model:
                raise ValueError(f"stream {args.stream} runs model {stats.model!r}, not --model {args.model!r}")
            return streams_json(stats) if args.json else stream_details(stats)
        streams = await client.list_streams(args.model)
        return streams_json(streams) if args.json else streams_table(streams)


async def _watch_streams(args: argparse.Namespace) -> int:
    """``streams --watch S``: print the table every S seconds until Ctrl-C (or SIGTERM, or an error), each under a
    line giving the server and the time; on a terminal the screen is cleared before each. Returns the signal that
    stopped it.

    Ctrl-C ends the wait between tables, or the listing under way once it returns (nothing is cancelled inside the
    gRPC client); a second Ctrl-C interrupts at once.
    """
    if args.stream is not None or args.json:
        raise ValueError("--watch prints the table again and again: leave --stream and --json out")
    clear = "\x1b[2J\x1b[H" if sys.stdout.isatty() else ""
    loop, stop = asyncio.get_running_loop(), asyncio.Event()
    received: list[int] = []

    def stopped(signal_number: int) -> None:
        received.append(signal_number)
        stop.set()
        loop.remove_signal_handler(signal_number)  # a second one takes its default course

    for signal_number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # no handler here: the default
            loop.add_signal_handler(signal_number, stopped, signal_number)
    async with client_from_args(args) as client:
        while not stop.is_set():
            table = streams_table(await client.list_streams(args.model))
            print(f"{clear}{args.target}  {time.strftime('%H:%M:%S')}  (every {args.watch:g} s; Ctrl-C to stop)")
            print(table, flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.watch)
    return received[0]


async def _end_stream(args: argparse.Namespace) -> str:
    """What ``end-stream`` prints: that the stream was ended, and the stream as it stood then."""
    async with client_from_args(args) as client:
        stats = await client.end_stream(args.stream_id, args.reason)
    return f"ended stream {stats.stream_id}; as it stood then:\n{stream_details(stats)}"


async def _reload(args: argparse.Namespace) -> ReloadOutcome:
    async with client_from_args(args) as client:
        return await client.reload_model(args.model)


def _to_rosbag(args: argparse.Namespace) -> int:
    """Write the ``to-rosbag`` bag; returns the exit status.

    Raises:
        ValueError: a flag or the output is refused, or the trajectory file is not one
            (:class:`~service.client.rosbag.RosbagError` says why).
        OSError: it cannot be read, or the bag cannot be written.
    """
    check_bag_arguments(args.out, args.topic, args.frame_id, args.storage)  # the flags' own errors, unprefixed
    try:
        loaded = np.load(args.trajectory, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile, NotImplementedError) as error:  # another file, cut short, broken
        raise ValueError(f"{args.trajectory}: not a trajectory file (.npz): {error or 'it is empty'}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{args.trajectory}: holds one array (.npy), not a trajectory file (.npz)")
    try:
        with loaded as trajectory:
            summary = write_rosbag(trajectory, args.out, args.topic, args.frame_id, args.storage)
    except RosbagError as error:
        raise ValueError(f"{args.trajectory}: {error}") from None
    missing = f"; {summary.missing} frames had no result, so no message" if summary.missing else ""
    print(f"wrote {summary.messages} messages on {summary.topic} to {summary.path}{missing}", file=sys.stderr)
    if summary.complete is False and summary.end_reason:  # without a reason, the file does not say how it ended
        print(
            f"warning: the run that made {args.trajectory} did not go through its source ({summary.end_reason}): "
            "the bag holds the frames before it stopped",
            file=sys.stderr,
        )
    return 0


def _synth(args: argparse.Namespace) -> int:
    """Write the ``synth`` clip; returns the exit status.

    Raises:
        ValueError: ``--frames`` below 1, ``--size`` below 2 (video encoders need sides of at least 2 pixels) or
            above :data:`~service.cli_limits.MAX_FRAME_SIDE`, or frames the codec cannot encode; each before any
            frame is made (a frame's drawing takes about 100 bytes a pixel).
        FileNotFoundError: the output's folder does not exist.
    """
    if args.frames < 1 or args.size < 2:
        raise ValueError(f"need --frames >= 1 and --size >= 2, got {args.frames} and {args.size}")
    check_frame_side(args.size, "--size")
    if not args.out.resolve().parent.is_dir():
        raise FileNotFoundError(f"{args.out}: the folder {args.out.resolve().parent} does not exist")
    written = 0
    try:
        with OverlayWriter(args.out, fps=15.0, what="clip") as writer:
            writer.check_size(args.size, args.size)
            for frame in synthetic_frames(args.frames, (args.size, args.size)):
                writer.write(frame)
                written += 1
    except KeyboardInterrupt:
        print(f"interrupted; {args.out} holds the first {written} frames", file=sys.stderr)
        return 130
    print(f"wrote {written} frames to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
