"""The command line of ``python -m service.client``: its commands, flags and the checks argparse makes of their
values (the commands themselves are :mod:`service.client.__main__`'s)."""

from __future__ import annotations

import argparse
import math

from plugins.files import user_path
from service.cli_limits import FPS_LIMITS, MAX_FRAME_SIDE, check_fps, epoch_ns
from service.client.reconnection import DEFAULT_RESUME_WINDOW_S
from service.client.rosbag import STORAGES
from service.client.sources import check_source_spec
from service.client.tls import add_tls_flags
from service.grpc_limits import DEFAULT_MAX_MESSAGE_BYTES, MAX_GRPC_MESSAGE_BYTES
from service.types import FrameFit

MIN_MESSAGE_BYTES = 1024 * 1024
"""The smallest ``--max-message-bytes``, as the server's."""


def build_parser(description: str) -> argparse.ArgumentParser:
    """The command-line parser of ``python -m service.client``, ``description`` its ``--help`` text."""
    parser = argparse.ArgumentParser(prog="python -m service.client", description=description)
    commands = parser.add_subparsers(dest="command", required=True)

    _add_stream_command(commands)
    _add_server_commands(commands)
    _add_file_commands(commands)
    return parser


def _add_stream_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``stream``: a source's frames to the server, its answers to overlays, JSON lines and trajectories."""
    stream = commands.add_parser("stream", help="stream a video, folder of frames or camera")
    stream.add_argument(
        "source", type=_source_spec, help="video file, folder of images, image file, camera:N or synthetic:N"
    )
    _connection_flags(stream)
    stream.add_argument("--out", type=user_path, help="overlay video to write (.gif or .mp4)")
    stream.add_argument("--jsonl", type=user_path, help="write one JSON line per frame here ('-': stdout)")
    stream.add_argument(
        "--slots",
        type=user_path,
        help="save the slot trajectories here (.npz: frame_index [T], capture_time_ns [T], slot_ids [T, K], slots "
        "[T, K, D], areas [T, K], frame_size [T, 2], centroids [T, K, 2], boxes [T, K, 4], source_frame [T], fps, "
        "capture_clock, model_version, frame_fit, source, end_reason, complete, and the frames that have no row and "
        "why: missing_frame_index [M], missing_source_frame [M], missing_reason [M]; service/client/trajectory.py)",
    )
    stream.add_argument("--model", default="", help="model name (default: the server's default)")
    stream.add_argument(
        "--frame-fit",
        choices=[fit.name.lower() for fit in FrameFit if fit != FrameFit.UNSPECIFIED],
        help="how the server fits frames to the model's input: stretch (whole, aspect ratio not kept), crop (centred "
        "box of the model's aspect ratio, for a model trained with --frame-fit crop; areas then sum to the crop's "
        "share) or pad (centred on grey; the whole frame undistorted) (default: the server's --frame-fit)",
    )
    stream.add_argument(
        "--live", action="store_true", help="live mode: a waiting frame is dropped for a newer one instead of queueing"
    )
    stream.add_argument(
        "--max-staleness-s",
        type=_positive_float,
        metavar="S",
        help="the server drops a frame (dropped: STALE) that is more than S seconds old by its clock when it arrives "
        "or is to reach the model; a frame's age counts from its capture time, which for a video file, a folder or "
        "a synthetic clip is the stream's start plus the frame's time in it (such a source sent slower than its "
        "frame rate falls behind and its frames are dropped), and for a camera the moment it was captured, so the "
        "two machines' clocks must agree (> 0; default: no limit)",
    )
    stream.add_argument(
        "--fps",
        type=_frame_rate,
        help=f"send at most this many frames per second ({FPS_LIMITS}); also the frame rate of a folder's or a "
        "synthetic clip's capture times",
    )
    stream.add_argument(
        "--start-time-ns",
        type=epoch_ns,
        metavar="NS",
        help="the wall-clock time of the source's first frame, in ns since the Unix epoch: a recording's capture "
        "times then count from its start, to line up with what was recorded beside it (a video file, a synthetic "
        "clip, or a folder or image file with --fps; with --max-staleness-s its frames age from then) (default: the "
        "stream's start)",
    )
    stream.add_argument("--window", type=_positive_int, default=4, help="frames in flight (>= 1; default: 4)")
    stream.add_argument("--max-frames", type=_positive_int, help="stop after this many frames (>= 1)")
    stream.add_argument(
        "--jpeg-quality",
        type=int,
        help="send frames as JPEG at this quality, 1-95 (lossy; default: raw RGB, or PNG, lossless, for a frame whose "
        "raw pixels do not fit one message)",
    )
    stream.add_argument(
        "--shared-memory",
        action="store_true",
        help="send raw frames through shared memory (a server on this host started with --shared-memory, reached "
        "over loopback): spares copying large frames through gRPC; frames of another size than the first go as "
        "usual",
    )
    stream.add_argument(
        "--max-message-bytes",
        type=_message_bytes,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        metavar="N",
        help="largest gRPC message this client sends or receives: match the server's --max-message-bytes (a frame "
        "that does not fit raw is sent as PNG; default: %(default)s, the server's default)",
    )
    stream.add_argument(
        "--reconnect",
        type=_count_arg,
        default=0,
        metavar="N",
        help="when the connection drops or the server shuts down, continue the stream where it stopped, trying up "
        "to N times after each failure; every reply then also carries the stream's state (>= 0; default: 0, the "
        "run stops)",
    )
    stream.add_argument(
        "--resume-window-s",
        type=_positive_float,
        metavar="S",
        help=f"with --reconnect: how long the server keeps the stream's state for it after the connection drops "
        f"(> 0; the server caps it; default: {DEFAULT_RESUME_WINDOW_S:g})",
    )


def _add_server_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The commands that ask a server about its model and streams, or have it act (the last three: Admin)."""
    describe = commands.add_parser("describe", help="print the model card")
    _connection_flags(describe)
    describe.add_argument("--model", default="", help="model name (default: the server's default)")

    streams = commands.add_parser(
        "streams",
        help="list the streams a server holds, with their counts and latencies (the Admin service: give an admin "
        "token, one of the server's --admin-token-file, with --token-file)",
    )
    _connection_flags(streams, "--admin-token-file")
    streams.add_argument("--model", default="", help="only this model's streams (default: every model's)")
    streams.add_argument("--stream", metavar="ID", help="print this stream alone, every field of it")
    streams.add_argument("--json", action="store_true", help="print JSON instead of a table")
    streams.add_argument(
        "--watch",
        type=_positive_float,
        metavar="S",
        help="print the table again every S seconds until Ctrl-C (the screen is cleared first on a terminal)",
    )

    end = commands.add_parser(
        "end-stream",
        help="end one of the server's streams and free its state; its client gets ABORTED (ENDED_BY_OPERATOR) with "
        "the reason (the Admin service: give an admin token with --token-file)",
    )
    _connection_flags(end, "--admin-token-file")
    end.add_argument("stream_id", help="the stream's id (see the streams command)")
    end.add_argument("--reason", default="", help="why, told to the stream's client and logged (200 characters)")

    reload = commands.add_parser(
        "reload",
        help="have the server load its model again from its --model-dir: new streams get the new version, open "
        "streams keep theirs (the Admin service: give an admin token with --token-file)",
    )
    _connection_flags(reload, "--admin-token-file")
    reload.add_argument("--model", default="", help="model name (default: the server's default)")


def _add_file_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The commands that work on files alone, without a server: ``to-rosbag`` and ``synth``."""
    bag = commands.add_parser(
        "to-rosbag",
        help="write a slot trajectory file (stream --slots, python -m service.extract) as a ROS 2 bag of "
        "slotstream_msgs/msg/SlotArray messages, one per frame, stamped with the frames' capture times (needs the "
        "'ros' extra)",
    )
    bag.add_argument("trajectory", type=user_path, help="the .npz trajectory file")
    bag.add_argument("out", type=user_path, help="the bag's folder, which must not exist")
    bag.add_argument("--topic", default="/slotstream/slots", help="topic of the messages (default: /slotstream/slots)")
    bag.add_argument(
        "--frame-id", default="camera", help="the messages' header.frame_id: the camera's frame (default: camera)"
    )
    bag.add_argument(
        "--storage",
        choices=STORAGES,
        default="mcap",
        help="bag storage: mcap (ROS 2's default from Iron on) or sqlite3 (default: mcap)",
    )

    synth = commands.add_parser("synth", help="write a generated clip of moving shapes")
    synth.add_argument("out", type=user_path, help=".mp4 or .gif")
    synth.add_argument("--frames", type=int, default=60, help="frames in the clip (default: 60)")
    synth.add_argument(
        "--size",
        type=int,
        default=128,
        help=f"square frame size in pixels, 2 to {MAX_FRAME_SIDE} (default: 128)",
    )


def _positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (a rate)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _frame_rate(text: str) -> float:
    """An argparse type: a frame rate within :func:`service.cli_limits.check_fps`'s bounds."""
    try:
        return check_fps(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {FPS_LIMITS}, got {text!r}") from None


def _message_bytes(text: str) -> int:
    """An argparse type: a message size in bytes, 1 MiB to gRPC's 2**31 - 1 (the server's range)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not MIN_MESSAGE_BYTES <= value <= MAX_GRPC_MESSAGE_BYTES:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of bytes from {MIN_MESSAGE_BYTES} (1 MiB) to {MAX_GRPC_MESSAGE_BYTES}, "
            f"got {text!r}"
        )
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


def _connection_flags(parser: argparse.ArgumentParser, token_file_flag: str = "--auth-token-file") -> None:
    """``--target``, the token flags and the TLS flags; ``token_file_flag``: the server's file the token comes from
    (``--admin-token-file`` for the Admin commands)."""
    parser.add_argument("--target", default="127.0.0.1:50051", help="server host:port (default: %(default)s)")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token", help="bearer token (visible to other users in the process list: prefer a file)")
    token.add_argument(
        "--token-file",
        type=user_path,
        help=f"file holding the bearer token: one token per line as the server's {token_file_flag} (blank lines and "
        "surrounding blanks ignored); the first is sent, so the server's own file works during a rotation",
    )
    add_tls_flags(parser)


__all__ = ["MIN_MESSAGE_BYTES", "build_parser"]
