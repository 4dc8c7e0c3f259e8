"""``python -m service.client``: stream a video to a server, write an overlay and per-frame JSON lines.

Commands::

    stream SOURCE --target HOST:PORT [--out overlay.gif|mp4] [--jsonl results.jsonl]
    describe --target HOST:PORT
    synth OUT.mp4|OUT.gif [--frames N]

SOURCE is a video file, a folder of frames, ``camera:N`` (OpenCV) or ``synthetic:N``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from service.client.core import Client, StreamError, TlsFiles, send_while_receiving
from service.client.overlay import OverlayWriter, render_overlay
from service.client.sources import Source, open_source
from service.client.synthetic import synthetic_clip
from service.types import FrameDropped, FrameError, FrameResponse, FrameResult, Output, StreamClosed, StreamOptions

_MASK_LONG_SIDE = 640


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(prog="python -m service.client", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    stream = commands.add_parser("stream", help="stream a video, folder of frames or camera")
    stream.add_argument("source", help="video file, folder of images, camera:N or synthetic:N")
    _connection_flags(stream)
    stream.add_argument("--out", type=Path, help="overlay video to write (.gif or .mp4)")
    stream.add_argument("--jsonl", type=Path, help="write one JSON line per frame here ('-': stdout)")
    stream.add_argument("--model", default="", help="model name (default: the server's default)")
    stream.add_argument("--live", action="store_true", help="live mode: drop stale frames instead of queueing")
    stream.add_argument("--fps", type=float, help="send at most this many frames per second")
    stream.add_argument("--window", type=int, default=4, help="frames in flight (default: 4)")
    stream.add_argument("--max-frames", type=int, help="stop after this many frames")
    stream.add_argument("--jpeg-quality", type=int, help="send frames as JPEG at this quality (default: raw)")

    describe = commands.add_parser("describe", help="print the model card")
    _connection_flags(describe)
    describe.add_argument("--model", default="")

    synth = commands.add_parser("synth", help="write a generated clip of moving shapes")
    synth.add_argument("out", type=Path, help=".mp4 or .gif")
    synth.add_argument("--frames", type=int, default=60)
    synth.add_argument("--size", type=int, default=128, help="square frame size in pixels")
    return parser


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="127.0.0.1:50051", help="server host:port")
    parser.add_argument("--token", help="bearer token")
    parser.add_argument("--tls-ca", type=Path, help="CA certificate: connect with TLS")
    parser.add_argument("--tls-cert", type=Path, help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", type=Path, help="client key (mutual TLS)")


def _client(args: argparse.Namespace) -> Client:
    tls = None
    if args.tls_ca or args.tls_cert or args.tls_key:
        tls = TlsFiles(root_ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)
    return Client(args.target, token=args.token, tls=tls)


def _mask_size(frame: np.ndarray) -> tuple[int, int]:
    height, width = frame.shape[:2]
    scale = min(1.0, _MASK_LONG_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


async def stream_source(args: argparse.Namespace, source: Source, out: TextIO | None) -> dict[str, Any]:
    """Stream ``source``; write overlay frames and JSON lines; return a summary."""
    frames: Iterator[np.ndarray] = source.frames
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{source.description} has no frames")
    options = StreamOptions(
        live=args.live, outputs=frozenset({Output.SLOTS, Output.SEGMENTATION}), mask_size=_mask_size(first)
    )
    fps = args.fps or source.fps or 15.0
    writer = OverlayWriter(args.out, fps) if args.out else None
    sent: dict[int, tuple[np.ndarray, float]] = {}
    summary = {"frames": 0, "results": 0, "dropped": 0, "errors": 0}
    async with _client(args) as client:
        stream = await client.open(options, model=args.model)
        window = asyncio.Semaphore(max(1, args.window))

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
                frame = await asyncio.to_thread(next, frames, None)
            await stream.close_writing()

        async def receive_all() -> None:
            while True:
                answer = await stream.receive()
                if isinstance(answer, StreamClosed):
                    return
                window.release()
                frame, started = sent.pop(answer.frame_index)
                latency_ms = (time.perf_counter() - started) * 1e3
                _record(answer, frame, latency_ms, summary, writer, out)

        try:
            await send_while_receiving(send_all(), receive_all())
        finally:
            if writer is not None:
                await asyncio.to_thread(writer.close)
    return summary


def _record(
    answer: FrameResponse,
    frame: np.ndarray,
    latency_ms: float,
    summary: dict[str, Any],
    writer: OverlayWriter | None,
    out: TextIO | None,
) -> None:
    summary["frames"] += 1
    line: dict[str, Any] = {"frame_index": answer.frame_index, "latency_ms": round(latency_ms, 3)}
    if isinstance(answer, FrameResult) and answer.segmentation is not None:
        summary["results"] += 1
        counts = np.bincount(answer.segmentation.ravel(), minlength=len(answer.slot_ids))
        line |= {
            "outcome": "result",
            "slot_ids": list(answer.slot_ids),
            "areas": [round(float(c) / answer.segmentation.size, 5) for c in counts[: len(answer.slot_ids)]],
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


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "synth":
            return _synth(args)
        if args.command == "describe":
            card = asyncio.run(_describe(args))
            print(json.dumps(asdict(card), indent=2))
            return 0
        for path in (args.out, args.jsonl):
            if path is not None and str(path) != "-" and not path.parent.is_dir():
                raise FileNotFoundError(f"{path}: the folder {path.parent} does not exist")
        source = open_source(args.source, args.max_frames)
        out: TextIO | None = None
        if args.jsonl is not None:
            out = sys.stdout if str(args.jsonl) == "-" else args.jsonl.open("w")
        try:
            summary = asyncio.run(stream_source(args, source, out))
        except KeyboardInterrupt:  # the way to stop a camera: the overlay and JSON lines so far are kept
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            if out is not None and out is not sys.stdout:
                out.close()
        print(
            f"{summary['frames']} frames from {source.description}: {summary['results']} results, "
            f"{summary['dropped']} dropped, {summary['errors']} errors"
            + (f"; overlay written to {args.out}" if args.out else ""),
            file=sys.stderr,
        )
        return 0 if summary["errors"] == 0 else 1
    except StreamError as error:
        print(f"server: {error}", file=sys.stderr)
        return 1
    except (OSError, ValueError, ImportError) as error:  # OSError: a missing or unreadable file, a corrupt image
        print(f"error: {error}", file=sys.stderr)
        return 2


async def _describe(args: argparse.Namespace) -> Any:
    async with _client(args) as client:
        return await client.describe(args.model)


def _synth(args: argparse.Namespace) -> int:
    if args.frames < 1 or args.size < 1:
        raise ValueError(f"--frames and --size must be >= 1, got {args.frames} and {args.size}")
    clip = synthetic_clip(args.frames, (args.size, args.size))
    with OverlayWriter(args.out, fps=15.0) as writer:
        for frame in clip:
            writer.write(frame)
    print(f"wrote {len(clip)} frames to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
