"""``python -m service.bench --target|--suite``: the gRPC load generator, and the README's figures in one run.

Against a running server (like Triton's perf_analyzer)::

    python -m service.bench --target HOST:PORT --streams 16 --frames 200 [--fps 30] --json out.json

Everything the README reports, in one run: the per-frame pipeline in-process (decode, model call, masks; no
gRPC), then a server started by this command, loaded with 1 stream and with N streams::

    python -m service.bench --suite --model DIR --streams 16 --frames 200 --json out.json

(``--local`` times the engines alone per backend: see :mod:`service.bench.local`.) Against a server on this host
started with ``--shared-memory``, ``--target HOST:PORT --compare-shared-memory --size 1080x1920`` times raw frames
sent as bytes and through shared memory side by side instead of a load (:mod:`service.bench.transport`).

Exit status: 0 when the run completed (the report counts the frames the server refused; a ``--suite`` ratio whose
terms were not measured is null), 1 when the server refused a stream, 2 for bad arguments, a model that does not
load or a server that does not start. Every report records its command line, machine and versions
(:mod:`service.bench.provenance`) and its settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from typing import Any

from plugins.cli_help import command_description
from plugins.files import user_path
from service.bench.cli import json_output_problems, usage_error
from service.bench.provenance import provenance, redact
from service.bench.remote import LoadSpec, run_load
from service.bench.suite import SuiteError, run_suite
from service.bench.transport import compare_transports
from service.cli_limits import FPS_LIMITS, MAX_FRAME_PIXELS, check_fps, check_frame_pixels, check_memory
from service.client import StreamError
from service.client.cli_client import token_from_args
from service.client.encoding import check_jpeg_quality
from service.client.requests import FRAME_FIELDS_BYTES
from service.client.synthetic import synthetic_clip
from service.client.tls import TlsFiles, add_tls_flags, tls_from_flags
from service.config import DEFAULT_MODEL_DIR, ConfigError
from service.grpc_limits import DEFAULT_MAX_MESSAGE_BYTES

MAX_IDLE_GAP_S = 3600.0
"""The longest ``--idle-gap-s``: streams stay open through a gap, so it must stay under the server's idle timeout."""
CLIP_FRAMES = 64
"""Frames of the synthetic clip every stream sends in a loop (frame ``i`` is frame ``i % 64``)."""
DRAWING_BYTES_PER_PIXEL = 110
"""Memory :func:`~service.client.synthetic.synthetic_frames` takes a pixel while it draws a frame (its float64 working
arrays; measured at about 105 with ``tracemalloc``), beside the uint8 frames kept."""


def clip_bytes(size: tuple[int, int]) -> int:
    """About the most memory the clip of frames of ``size`` ``(H, W)`` holds while it is made: its
    :data:`CLIP_FRAMES` uint8 RGB frames and the drawing of one more. JPEG copies (``--jpeg-quality``) are smaller
    than the frames."""
    pixels = size[0] * size[1]
    return (CLIP_FRAMES * 3 + DRAWING_BYTES_PER_PIXEL) * pixels


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m service.bench", description=command_description(__doc__), allow_abbrev=False
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--target", help="server host:port to load")
    mode.add_argument("--suite", action="store_true", help="pipeline in-process + a spawned server, 1 and N streams")
    parser.add_argument("--model", type=user_path, default=DEFAULT_MODEL_DIR, help="model directory (--suite)")
    parser.add_argument(
        "--backend", default="torch", help="backend of the spawned server and pipeline (--suite; default: torch)"
    )
    parser.add_argument("--streams", type=int, default=1, help="concurrent streams (default: 1)")
    parser.add_argument("--frames", type=int, default=200, help="frames per stream (default: 200)")
    parser.add_argument(
        "--fps", type=float, help=f"per-stream send rate, {FPS_LIMITS} (default: as fast as answers come)"
    )
    parser.add_argument("--window", type=int, default=1, help="frames in flight per stream (1: send, await answer)")
    parser.add_argument("--live", action="store_true", help="open streams in live mode")
    parser.add_argument(
        "--max-staleness-s",
        type=float,
        default=0.0,
        metavar="S",
        help="open streams with this max_staleness_s: frames that wait longer than S seconds from their send are "
        "dropped as stale, counted in dropped_by_reason (default: 0, no limit)",
    )
    parser.add_argument(
        "--idle-gap-s",
        type=float,
        default=0.0,
        metavar="S",
        help="after every --gap-every frames, each stream waits for its answers and then sends nothing for S seconds; "
        "the first frames after the gaps are reported apart (after_gap_latency_ms, after_gap_ratio_p50); "
        "frames_per_second then counts the gaps' time too (default: 0, no gaps)",
    )
    parser.add_argument("--gap-every", type=int, default=20, help="frames between idle gaps (default: 20)")
    parser.add_argument(
        "--size",
        type=_pixels,
        default=(128, 128),
        help=f"frame size sent: N (square) or HxW, in pixels, e.g. 480x640, at most {MAX_FRAME_PIXELS} pixels "
        "(default: 128)",
    )
    parser.add_argument(
        "--mask-size",
        type=_pixels,
        help=f"segmentation size asked for: N or HxW, at most {MAX_FRAME_PIXELS} pixels (default: the model's input "
        "size; a client showing masks over the frame asks for the frame's size)",
    )
    parser.add_argument("--jpeg-quality", type=int, help="send JPEG instead of raw frames")
    parser.add_argument(
        "--compare-shared-memory",
        action="store_true",
        help="--target on this host: send --frames raw frames of --size on two streams in alternation, one as bytes "
        "and one through shared memory (a server started with --shared-memory), and report both round trips and "
        "their ratio instead of a load",
    )
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token", help="bearer token (visible to other users in the process list: prefer a file)")
    token.add_argument(
        "--token-file",
        type=user_path,
        help="file holding the bearer token, one per line as the server's --auth-token-file; the first is sent",
    )
    add_tls_flags(parser, " (--target)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (--suite; default: 5)")
    parser.add_argument("--server-args", default="", help="more `python -m service` flags (--suite)")
    parser.add_argument("--json", type=user_path, help="write the report here")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a summary and write the JSON report.

    Exit status: 0 when the run completed (its report counts any frame the server refused), 1 when the server
    refused a stream (``--target``: no server there, a missing ``--token``) or ended one before answering all its
    frames (``--target`` and ``--suite``: ``lost`` above 0, a server that shut down, an operator's end-stream, an
    idle timeout; the report is still printed and written), 2 for bad arguments, a model that does not load or a
    server that does not start (``--suite``).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(args_list)
    tls = _checked_arguments(parser, args)
    if args.suite and not args.model.is_dir():
        return usage_error("--suite", [f"--model {args.model} is not a directory"])
    clip = synthetic_clip(CLIP_FRAMES, args.size)
    report: dict[str, Any] = {}
    if args.compare_shared_memory:
        try:
            compared = asyncio.run(compare_transports(args.target, clip, args.frames, args.token, tls))
        except StreamError as error:
            print(f"python -m service.bench: {args.target}: {error}", file=sys.stderr)
            return 1
        except ValueError as error:  # the server reads no shared memory for this client; a frame refused
            print(f"python -m service.bench: {error}", file=sys.stderr)
            return 2
        report["provenance"] = provenance(args_list)
        report["settings"] = _settings(args)
        report["shared_memory_comparison"] = compared
    elif args.target:
        try:
            result = asyncio.run(run_load(_spec(args, args.target, args.streams), clip))
        except StreamError as error:  # no server there, a missing token, ...
            print(f"python -m service.bench: {args.target}: {error}", file=sys.stderr)
            return 1
        except ValueError as error:  # a frame the client cannot send (too large for one message)
            print(f"python -m service.bench: {error} (try a smaller --size or --jpeg-quality)", file=sys.stderr)
            return 2
        report["provenance"] = provenance(args_list)  # the model runs in the server, not here: no device
        report["settings"] = _settings(args)
        report["remote"] = [result.report()]
    if args.suite:
        spec = _spec(args, "", args.streams)
        server_args = args.server_args.split()
        mode = "python -m service.bench --suite"
        try:
            suite = run_suite(args.model, args.backend, spec, clip, args.rounds, server_args)
        except (ConfigError, SuiteError) as error:  # --server-args the server refuses, a model that does not load
            print(f"{mode}: {error}", file=sys.stderr)
            return 2
        except StreamError as error:  # the server refused a stream (a missing --token, options it refuses) or ended it
            print(f"{mode}: a stream to the server failed: {error}", file=sys.stderr)
            return 1
        except ValueError as error:  # a frame the client cannot send (too large for one message)
            print(f"{mode}: {error} (try a smaller --size or --jpeg-quality)", file=sys.stderr)
            return 2
        report["provenance"] = provenance(args_list, device=suite["local"][0]["device"])
        report["settings"] = _settings(args) | {
            "model": str(args.model),
            "backend": args.backend,
            "rounds": args.rounds,
            "server_args": redact(server_args),
        }
        report |= suite
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(_summary(report), file=sys.stderr)
    if not args.json:
        print(text)
    return 1 if _reported_lost_frames(report, args.target or "the suite's server") else 0


def _reported_lost_frames(report: dict[str, Any], server: str) -> bool:
    """Whether a load run over gRPC (``--target``, or the ``--suite``'s own server) lost frames: the server ended a
    stream before answering them. Says so on stderr, as the last line, so that a script sees why the run failed."""
    runs = report.get("remote", [])
    lost = sum(run["lost"] for run in runs)
    if not lost:
        return False
    sent, ended = sum(run["sent"] for run in runs), sum(run["ended_streams"] for run in runs)
    why = next((f" (the first: {run['first_end']})" for run in runs if "first_end" in run), "")
    print(
        f"python -m service.bench: {server}: {lost} of {sent} frames got no answer: the server ended {ended} "
        f"stream(s) before answering them{why}; the figures cover the frames answered",
        file=sys.stderr,
    )
    return True


def _checked_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> TlsFiles | None:
    """Exit with a usage error (status 2) on any flag value or combination the run cannot use; read the token
    into ``args.token`` and return the TLS files, read once (``None``: plaintext)."""
    if problems := json_output_problems(args.json, args.model if args.suite else None):
        parser.error("; ".join(problems))
    for flag in ("streams", "frames", "window", "rounds", "gap_every"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if not (math.isfinite(args.idle_gap_s) and 0 <= args.idle_gap_s <= MAX_IDLE_GAP_S):
        parser.error(f"--idle-gap-s must be a number from 0 to {MAX_IDLE_GAP_S:g}, got {args.idle_gap_s}")
    if not args.idle_gap_s and args.gap_every != parser.get_default("gap_every"):
        parser.error("--gap-every only matters with --idle-gap-s S (S > 0): add it, or leave --gap-every out")
    if args.idle_gap_s and args.suite:
        parser.error("--idle-gap-s is for --target: the --suite's frames/s and ratios assume a steady load")
    if args.idle_gap_s and args.gap_every >= args.frames:
        parser.error(f"--gap-every {args.gap_every} leaves no gap in --frames {args.frames}: give fewer")
    if not (math.isfinite(args.max_staleness_s) and args.max_staleness_s >= 0):
        parser.error(f"--max-staleness-s must be a number >= 0 (0: no limit), got {args.max_staleness_s}")
    try:
        if args.fps is not None:
            check_fps(args.fps)
        for flag, size in (("--size", args.size), ("--mask-size", args.mask_size)):
            if size is not None:
                check_frame_pixels(size[0], size[1], flag, _shown(size))
    except ValueError as error:
        parser.error(str(error))
    if args.jpeg_quality is not None:
        try:
            check_jpeg_quality(args.jpeg_quality, "--jpeg-quality")
        except ValueError as error:
            parser.error(str(error))
    if args.compare_shared_memory and (problems := _not_compared(args, parser)):
        parser.error(
            f"--compare-shared-memory times one frame in flight on two streams (--target, --size, --frames, --token "
            f"and the TLS flags); it takes no {', '.join(problems)}"
        )
    raw_bytes = args.size[0] * args.size[1] * 3
    if args.jpeg_quality is None and raw_bytes > DEFAULT_MAX_MESSAGE_BYTES - FRAME_FIELDS_BYTES:
        advice = "" if args.compare_shared_memory else " or send JPEG with --jpeg-quality"
        parser.error(
            f"--size {_shown(args.size)}: a raw frame is {raw_bytes:,} bytes, more than one message carries "
            f"({DEFAULT_MAX_MESSAGE_BYTES:,}); give a smaller --size{advice}"
        )
    try:  # the clip is built whole, before the first frame is sent
        check_memory(clip_bytes(args.size), f"--size {_shown(args.size)}: the {CLIP_FRAMES} frames of the clip sent")
    except ValueError as error:
        parser.error(str(error))
    try:
        args.token = token_from_args(args)  # the file read once, before anything runs
    except (OSError, ValueError) as error:
        parser.error(str(error))
    try:  # read when each stream connects, where a missing file ended the run in a traceback
        tls = tls_from_flags(args)
        if tls is not None:
            tls.read()
    except (OSError, ValueError) as error:
        parser.error(str(error))
    if args.suite and args.streams < 2:
        parser.error("--suite compares one stream with --streams N concurrent ones: give --streams 2 or more")
    return tls


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The load flags of a run (the token only as whether one was given)."""
    return {
        "target": args.target,
        "streams": args.streams,
        "frames": args.frames,
        "fps": args.fps,
        "window": args.window,
        "live": args.live,
        "max_staleness_s": args.max_staleness_s,
        "idle_gap_s": args.idle_gap_s,
        "gap_every": args.gap_every,
        "size": _shown(args.size),
        "mask_size": _shown(args.mask_size) if args.mask_size else None,
        "jpeg_quality": args.jpeg_quality,
        "compare_shared_memory": args.compare_shared_memory,
        "token": args.token is not None,
        "tls": tls_from_flags(args) is not None,
        "warmup_frames": LoadSpec.warmup_frames,
    }


def _spec(args: argparse.Namespace, target: str, streams: int) -> LoadSpec:
    return LoadSpec(
        target=target,
        streams=streams,
        frames=args.frames,
        fps=args.fps,
        window=args.window,
        live=args.live,
        max_staleness_s=args.max_staleness_s,
        idle_gap_s=args.idle_gap_s,
        gap_every=args.gap_every,
        jpeg_quality=args.jpeg_quality,
        mask_size=args.mask_size,
        token=args.token,
        tls=tls_from_flags(args),
    )


def _pixels(text: str) -> tuple[int, int]:
    """``N`` or ``HxW`` as ``(H, W)``, both at least 1 (an argparse type)."""
    try:
        sides = tuple(int(side) for side in text.lower().split("x"))
    except ValueError:
        sides = ()
    if len(sides) == 1:
        sides = (sides[0], sides[0])
    if len(sides) != 2 or min(sides) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW with sides of at least 1 pixel (480x640), got {text!r}")
    return sides[0], sides[1]


def _not_compared(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The flags given with ``--compare-shared-memory`` that it would not use (it measures one frame in flight on
    two streams, raw, of the model's mask size), each as the command line spells it."""
    ignored = (
        "suite",
        "streams",
        "fps",
        "window",
        "live",
        "max_staleness_s",
        "idle_gap_s",
        "gap_every",
        "mask_size",
        "jpeg_quality",
    )
    return ["--" + name.replace("_", "-") for name in ignored if getattr(args, name) != parser.get_default(name)]


def _shown(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _reasons(counts: dict[str, int]) -> str:
    """`` (stale 3, superseded 1)`` for drop counts by reason; empty for none."""
    return f" ({', '.join(f'{reason} {count}' for reason, count in counts.items())})" if counts else ""


def _summary(report: dict[str, Any]) -> str:
    lines = []
    for local in report.get("local", []):
        lat, call, grpc_ms = local["frame_latency_ms"], local["model_call_ms"], local["grpc_one_stream_ms"]
        lines.append(
            f"pipeline[{local['backend']}] in-process: p50 {lat.get('p50')} ms, p95 {lat.get('p95')} ms, "
            f"p99 {lat.get('p99')} ms (model call alone: p50 {call.get('p50')} ms; the same frames over gRPC, "
            f"interleaved: p50 {grpc_ms.get('p50')} ms)"
        )
        if local["grpc_first_error"] is not None or local["grpc_one_stream_dropped"]:
            lines.append(
                f"paired frames over gRPC: {local['grpc_one_stream_errors']} failed, "
                f"{local['grpc_one_stream_dropped']} dropped; first error: {local['grpc_first_error']}"
            )
    if "shared_memory_comparison" in report:
        compared = report["shared_memory_comparison"]
        lines.append(
            f"raw {compared['frame_shape'][0]}x{compared['frame_shape'][1]} frames, p50 round trip: as bytes "
            f"{compared['bytes']['latency_ms'].get('p50')} ms, through shared memory "
            f"{compared['shared_memory']['latency_ms'].get('p50')} ms (ratio {compared['ratio_p50']}); the "
            f"server's own time {compared['bytes']['server_total_ms'].get('p50')} and "
            f"{compared['shared_memory']['server_total_ms'].get('p50')} ms"
        )
    for run in report.get("remote", []):
        lat = run["latency_ms"]
        lines.append(
            f"gRPC {run['spec']['streams']} stream(s): {run['frames_per_second']} frames/s, p50 {lat.get('p50')} ms, "
            f"p95 {lat.get('p95')} ms, p99 {lat.get('p99')} ms, "
            f"frame-weighted mean batch {run['frame_weighted_mean_batch_size']}, "
            f"dropped {run['dropped']}{_reasons(run.get('dropped_by_reason', {}))}, errors {run['errors']}, "
            f"lost {run['lost']}"
        )
        if "after_gap_latency_ms" in run:
            after, steady = run["after_gap_latency_ms"], run["steady_latency_ms"]
            lines.append(
                f"after {run['spec']['idle_gap_s']} s idle gaps: p50 {after.get('p50')} ms, max {after.get('max')} ms "
                f"over {after.get('count')} frames, against p50 {steady.get('p50')} ms for the others (ratio "
                f"{run['after_gap_ratio_p50']})"
            )
    if "ratios" in report:
        lines.append(f"ratios: {report['ratios']}")
        undefined = [name for name, value in report["ratios"].items() if value is None]
        if undefined:
            lines.append(f"not measured (no frame answered): {', '.join(undefined)} (null in the report)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
