"""The ``stream`` command's run: encode a source's frames and send them, receive the answers, record them, reconnect.

:func:`stream_source` streams a :class:`~service.client.sources.Source` over one stream of a server, writing the
overlay (:class:`~service.client.overlay.OverlayWorker`), the JSON lines
(:class:`~service.client.answer_outputs.JsonLines`) and the slots
(:class:`~service.client.trajectory_writer.SlotTrajectory`), sending each frame raw, as JPEG, or as PNG when raw
does not fit one message (:class:`FrameEncoder`), and with ``--reconnect N`` continues the stream through a lost
connection or a server shutdown. ``python -m service.client`` (:mod:`service.client.__main__`) parses the command
line and reports the outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

import grpc
import numpy as np

from plugins.signals import sigint_held
from service.client.answer_outputs import JsonLines, record_answer
from service.client.cli_client import client_from_args, token_from_args
from service.client.connection import Client
from service.client.daemon_calls import DaemonCalls
from service.client.errors import StreamError
from service.client.exchange import mark_seen, send_while_receiving
from service.client.frame_encoder import FrameEncoder
from service.client.overlay import OverlayWorker, OverlayWriter
from service.client.reconnection import (
    StreamClients,
    continue_stream,
    interruption,
    reconnect_options,
    worth_reconnecting,
)
from service.client.segmentation_geometry import trajectory_mask_size
from service.client.shared_frames import SharedFrameRing, refuses_shared_memory
from service.client.sources import Source, SourceFrame
from service.client.stream import ClientStream
from service.client.trajectory import END, INTERRUPTED, MAX_FRAMES, UNANSWERED, server_ended, source_error
from service.client.trajectory_writer import SlotTrajectory
from service.engine import ModelCard
from service.errors import ErrorCode
from service.types import (
    CloseReason,
    DropReason,
    FrameDropped,
    FrameError,
    FrameFit,
    Output,
    StreamClosed,
    StreamOpened,
    StreamOptions,
)

_REFUSAL_SETTINGS = {
    ErrorCode.IMAGE_TOO_LARGE: "the server's --max-image-pixels sets that limit, whatever the encoding: raise it "
    "there, or send smaller frames",
}
"""What to change for a frame refusal that a server setting causes, by error code."""
_SERVER_MESSAGE_LIMIT = re.compile(r"SERVER: Received message larger than max \((\d+) vs\. (\d+)\)")
"""gRPC's status message when the server refused a message over its limit: the message's size, the limit."""


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
        elif error.status == grpc.StatusCode.RESOURCE_EXHAUSTED and (limit := _server_message_limit(error)):
            what = (
                f"the server at {self.target} refused a {int(limit[1]):,}-byte frame message after {counts} were "
                f"answered: it takes messages of at most {int(limit[2]):,} bytes (its --max-message-bytes)"
            )
            advice = (
                f"pass --max-message-bytes {limit[2]} here too, and frames whose raw pixels do not fit are sent as "
                "PNG (lossless); or raise the server's --max-message-bytes, or send JPEG with --jpeg-quality Q"
            )
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


class FrameFeed:
    """A source's frames, read one at a time on a daemon thread of the feed's own (a camera or decoder may block).

    The thread is a daemon, not one of the loop's default executor, which ``asyncio.run`` and the interpreter wait
    for when they end: a read that never returns (a stalled camera, a frame file that is a FIFO nobody writes)
    cannot hold up a Ctrl-C or SIGTERM. :meth:`current` returns the same frame until :meth:`advance`, and a read
    goes on when the task waiting for it is cancelled (a lost connection restarts the sending loop), so no frame is
    lost or read twice. :meth:`close` ends the thread once its read returns (if ever).
    """

    def __init__(self, frames: Iterator[SourceFrame]) -> None:
        self._frames = frames
        self._reader = DaemonCalls("slotstream-frame-reader")
        self._current: SourceFrame | None = None
        self._read: asyncio.Future[SourceFrame | None] | None = None
        self._ended = False

    async def current(self) -> SourceFrame | None:
        """The next frame to send; ``None`` once the source has no more.

        Raises:
            Exception: what the source raised reading it (``OSError``, ``ValueError``: a frame it could not read
                or decode).
        """
        if self._current is None and not self._ended:
            if self._read is None:
                self._read = asyncio.ensure_future(self._reader.call(next, self._frames, None))
                self._read.add_done_callback(mark_seen)
            frame = await asyncio.shield(self._read)
            self._read = None
            self._current = frame
            self._ended = frame is None
        return self._current

    def advance(self) -> None:
        """The current frame was sent: the next :meth:`current` reads the one after it."""
        self._current = None

    def close(self) -> None:
        """End the reading thread after the read it is doing (a daemon: one that never returns is left behind)."""
        self._reader.stop()


async def stream_source(
    args: argparse.Namespace, source: Source, jsonl: JsonLines, trajectory: SlotTrajectory | None = None
) -> dict[str, Any]:
    """Stream ``source``; write overlay frames and JSON lines, and record the slots in ``trajectory``; return a
    summary: frames answered (``frames``), of which results, dropped frames and errors, and the frames written to
    the overlay (``overlay_frames``; 0 without one). The first refusal of each error code is printed to stderr
    (the others are counted), so a refused frame says why without ``--jsonl``.

    The JSON-lines file is opened (and truncated) only once the server has accepted the stream, so a refused
    connection leaves an earlier run's results in place; so is the trajectory file written (when the stream
    ends, however it ends: finished, ended by the server or interrupted, with the results received until then,
    why each other frame sent has no row (dropped, refused, or ``unanswered``: the run stopped before its answer, or
    a reconnect went on past it), and how it ended: its ``end_reason`` and ``complete``,
    :mod:`service.client.trajectory`).

    With ``args.reconnect`` (``--reconnect N``) a lost connection or a server shutdown is followed by up to N
    :meth:`ClientStream.reconnect` tries, and the stream goes on where it stopped.

    Raises:
        StreamError: the server refused the stream.
        StreamEnded: the server ended it after accepting it (for example on shutdown), or the connection was lost,
            and it could not be continued; the overlay and JSON lines keep the answers received until then.
        OSError, ValueError: the source failed partway (a frame it could not read or decode), or a frame fits no
            message (:meth:`FrameEncoder.encode`); the stream was closed first and the answers to the frames sent
            before it were recorded.
    """
    feed = FrameFeed(source.frames)
    encoder = FrameEncoder(args.jpeg_quality, args.max_message_bytes)
    try:
        return await _stream_feed(args, source, feed, encoder, jsonl, trajectory)
    finally:
        feed.close()
        encoder.close()


async def _stream_feed(
    args: argparse.Namespace,
    source: Source,
    feed: FrameFeed,
    encoder: FrameEncoder,
    jsonl: JsonLines,
    trajectory: SlotTrajectory | None,
) -> dict[str, Any]:
    """:func:`stream_source`'s run, with ``source``'s frames read through ``feed`` (the first one too) and encoded by
    ``encoder``."""
    first = await feed.current()
    if first is None:
        raise ValueError(f"{source.description} has no frames")
    fit = FrameFit.named(args.frame_fit) if args.frame_fit else FrameFit.UNSPECIFIED
    options = StreamOptions(
        live=args.live,
        outputs=frozenset({Output.SLOTS, Output.SEGMENTATION}),
        mask_size=trajectory_mask_size(first.image.shape[:2]),
        frame_fit=fit,
        max_staleness_s=args.max_staleness_s or 0.0,
    )
    if args.reconnect:  # a resume window, and the state with every result
        options = reconnect_options(options, args.resume_window_s)
    fps = args.fps or source.fps or 15.0
    writer = OverlayWriter(args.out, fps) if args.out else None
    if trajectory is not None:
        trajectory.fps = source.fps or math.nan
        trajectory.capture_clock = source.clock
        trajectory.source = args.source
    async with client_from_args(args) as client:
        stream = await client.open(options, model=args.model)
        out = jsonl.open()
        card = await _card(client, stream.opened) if stream.opened is not None else None
        if card is not None and encoder.fit_server_limit(card.max_request_bytes):
            print(
                f"note: the server takes messages of at most {card.max_request_bytes:,} bytes (its "
                f"--max-message-bytes), fewer than --max-message-bytes here ({args.max_message_bytes:,}): frames are "
                "sized to fit the server's limit",
                file=sys.stderr,
            )
        if args.shared_memory:
            if card is None or not card.shared_memory:
                raise ValueError(
                    "--shared-memory: the server does not read shared memory for this client (start it with "
                    "--shared-memory, on this host, and connect over loopback)"
                )
            # one slot more than the frames in flight: a slot is written again only after its frame was answered
            encoder.ring = SharedFrameRing(first.image.shape[:2], slots=args.window + 1)
        if trajectory is not None and stream.opened is not None:
            _describe_trajectory(stream.opened, card, trajectory)
        if args.reconnect and stream.opened is not None and stream.opened.options.resume_window_s <= 0:
            print(
                "warning: the server keeps no resume window (its --max-resume-window-s is 0): --reconnect cannot "
                "resume this stream, only continue it from the state its last answer carried",
                file=sys.stderr,
            )
        overlay = OverlayWorker(writer) if writer is not None else None
        run = _StreamRun(args, source, stream, feed, encoder, out, overlay, trajectory)
        try:
            await run.run()
            end_reason = MAX_FRAMES if source.limit_reached else END
        except StreamEnded as ended:
            end_reason = server_ended(ended.error)
            raise
        except (OSError, ValueError) as error:
            end_reason = source_error(error)
            raise
        except BaseException:  # Ctrl-C or SIGTERM (a cancelled task), or a failure of this command's own
            end_reason = INTERRUPTED
            raise
        finally:
            try:  # the slots first: saving them is quick, and finishing the overlay may not be
                if trajectory is not None:
                    trajectory.end_reason = end_reason
                    run.record_unanswered()
                    with sigint_held():  # a second Ctrl-C (the first cancelled the run) must not lose the file
                        trajectory.save()
            finally:
                if overlay is not None:
                    await overlay.close()
                await run.close_clients()
    run.summary["overlay_frames"] = writer.frames if writer is not None else 0
    return run.summary


async def _card(client: Client, opened: StreamOpened) -> ModelCard | None:
    """The card of the model serving the stream ``opened``, or None when it cannot be read."""
    try:
        return await client.describe(opened.model)
    except StreamError:
        return None


def _describe_trajectory(opened: StreamOpened, card: ModelCard | None, trajectory: SlotTrajectory) -> None:
    """Give ``trajectory`` what the server said of the stream: the frame fit it chose (not the one asked for), the
    slot count K, the model version and, from the model's ``card``, the slot width D, so a file without rows (every
    frame refused) still says them. A card that could not be read (None), or that is of another version than the
    stream's (the model was reloaded meanwhile), leaves D unknown: the rows give it."""
    trajectory.frame_fit = opened.options.frame_fit.name
    trajectory.slot_count = len(opened.slot_ids)
    trajectory.model_version = opened.model_version
    if card is not None and card.version == opened.model_version:
        trajectory.slot_width = card.slot_dim


class _StreamRun:
    """Sending a source's frames over an opened stream while receiving and recording the answers, and continuing
    the stream after a lost connection or a shutdown (``--reconnect``).

    At most ``args.window`` frames are unanswered at a time; with ``--fps`` the frames are paced at that rate. With
    an overlay, each frame is sent once the overlay has room (:meth:`OverlayWorker.wait_for_room`): a lagging
    overlay slows the sending, not the receive loop, so ``latency_ms`` stays the round trip (the answers are read
    and timestamped as they come), and at most :data:`~service.client.overlay.OVERLAY_QUEUE` plus
    ``args.window`` frames wait for the overlay. Each frame is sent as ``encoder`` encodes it (raw, JPEG, or PNG
    when raw does not fit one message), with a capture time on the stream's wall-clock anchor (a source with its
    own timeline) or as the source read it (a camera).

    Attributes:
        summary: frames answered (``frames``), of which results, dropped frames and errors.
        frames_sent: frames sent (each counted once, also when a reconnect re-sends it).
    """

    def __init__(
        self,
        args: argparse.Namespace,
        source: Source,
        stream: ClientStream,
        feed: FrameFeed,
        encoder: FrameEncoder,
        out: TextIO | None,
        overlay: OverlayWorker | None,
        trajectory: SlotTrajectory | None,
    ) -> None:
        self.args, self.source, self.stream, self.feed, self.encoder = args, source, stream, feed, encoder
        self.out, self.overlay, self.trajectory = out, overlay, trajectory
        self.summary = {"frames": 0, "results": 0, "dropped": 0, "errors": 0}
        self.frames_sent = 0
        self._codes_told: set[ErrorCode] = set()  # error codes whose first refusal was printed
        self._stale_told = False  # the first frame dropped as stale was printed
        self._all_sent = False
        self._in_flight: dict[int, tuple[np.ndarray, float]] = {}  # frame index -> (image, time it was sent)
        self._window = asyncio.Semaphore(args.window)
        self._interval = 1 / args.fps if args.fps else 0.0
        self._next_send = time.perf_counter()
        # the source's start on the wall clock (--start-time-ns, else the stream's start): capture times count from it
        self._anchor_ns = args.start_time_ns or time.time_ns()
        # the stream's clients: its first, and one made for each try after a server's shutdown
        self._clients = StreamClients(lambda: client_from_args(args), stream.client, _warn)

    async def run(self) -> None:
        """Send every frame and record every answer, reconnecting as ``--reconnect`` allows.

        Raises:
            StreamEnded: the stream ended early and could not be continued.
            Exception: what the source raised when it failed partway (``OSError``, ``ValueError``: a frame it could
                not read or decode), after the stream was closed and the answers to the frames sent were recorded
                (for up to ``send_while_receiving``'s settle time).
        """
        while True:
            try:
                # A source that fails partway closes the stream, so the answers to the frames sent are still
                # recorded before its error is raised.
                await send_while_receiving(self._send_all(), self._receive_all(), close=self.stream.close_writing)
                return
            except StreamError as error:
                if not self.args.reconnect or not worth_reconnecting(error, self.args.token_file is not None):
                    raise StreamEnded(error, self.summary["frames"], self.frames_sent, self.args.target) from error
                await self._continue_after(error)

    async def _send_all(self) -> None:
        stream, feed = self.stream, self.feed
        while (item := await feed.current()) is not None:
            if self.overlay is not None:  # the overlay's back-pressure: here, so the receive loop never waits
                await self.overlay.wait_for_room()
            await self._window.acquire()
            index = stream.next_frame_index
            try:
                if self._interval:
                    await asyncio.sleep(max(0.0, self._next_send - time.perf_counter()))
                    self._next_send += self._interval
                capture_ns = self._anchor_ns + item.time_ns if self.source.own_timeline else item.time_ns
                started = time.perf_counter()  # latency_ms counts the encoding too
                encoded = await self.encoder.encode(item.image, index)
                self._in_flight[index] = (item.image, started)  # before the send: it may be answered first
                if self.trajectory is not None:  # the row's source_frame, when its answer is a result
                    self.trajectory.source_frames[index] = item.source_frame
                await stream.send(encoded, frame_index=index, capture_time_ns=capture_ns)
            finally:
                if stream.next_frame_index > index:  # recorded: sent, or re-sent by reconnect()
                    feed.advance()
                    self.frames_sent += 1
                else:  # refused or cancelled before it counted as sent: it goes out next time
                    self._in_flight.pop(index, None)
                    self._forget_source_frame(index)
                    self._window.release()
        self._all_sent = True
        await stream.close_writing()

    async def _receive_all(self) -> None:
        stream = self.stream
        while True:
            answer = await stream.receive()
            received = time.perf_counter()
            if isinstance(answer, StreamClosed):
                # The server closes its streams itself when it shuts down: an error only when frames were left
                # unanswered or unsent (a drain right after the last answer is not).
                ended_early = stream.unanswered or not self._all_sent
                if answer.reason != CloseReason.CLIENT_CLOSED and ended_early:
                    raise StreamError.from_closed(answer, stream.handoff)
                return
            self._window.release()
            frame, started = self._in_flight.pop(answer.frame_index)
            latency_ms = (received - started) * 1e3
            record_answer(answer, frame, latency_ms, self.summary, self.overlay, self.out, self.trajectory)
            self._forget_source_frame(answer.frame_index)  # taken by its row or missing entry, if it made one
            if isinstance(answer, FrameError):
                self._tell_refusal(answer)
            elif isinstance(answer, FrameDropped) and answer.reason == DropReason.STALE:
                self._tell_stale(answer)

    def record_unanswered(self) -> None:
        """Record each frame sent and not answered (the run stopped first) in the trajectory, as missing with
        reason :data:`~service.client.trajectory.UNANSWERED`."""
        if self.trajectory is not None:
            for index in sorted(self._in_flight):
                self.trajectory.add_missing(index, UNANSWERED)

    def _forget_source_frame(self, index: int) -> None:
        """Drop frame ``index``'s source frame from the trajectory's :attr:`SlotTrajectory.source_frames`: its answer
        made its row or missing entry, or it was not sent."""
        if self.trajectory is not None:
            self.trajectory.source_frames.pop(index, None)

    def _tell_refusal(self, answer: FrameError) -> None:
        """Print the first refusal of each error code to stderr (the summary counts them all), with the server
        setting behind it when it is one (:data:`_REFUSAL_SETTINGS`)."""
        if answer.code in self._codes_told:
            return
        self._codes_told.add(answer.code)
        setting = _REFUSAL_SETTINGS.get(answer.code)
        print(
            f"frame {answer.frame_index} refused: {answer.code.name}: {answer.message}"
            + (f" ({setting})" if setting else "")
            + f" (later frames refused with {answer.code.name} are only counted)",
            file=sys.stderr,
        )

    def _tell_stale(self, answer: FrameDropped) -> None:
        """Print the first frame dropped as stale to stderr (the summary counts them all): its message gives the
        frame's age, where clocks out of step show."""
        if not self._stale_told:
            self._stale_told = True
            print(
                f"frame {answer.frame_index} dropped: STALE: {answer.message} (later stale frames are only counted)",
                file=sys.stderr,
            )

    async def _continue_after(self, error: StreamError) -> None:
        """Reconnect with up to ``--reconnect`` tries.

        Raises:
            StreamEnded: no try succeeded (or the last failure is not worth another).
        """
        args, stream = self.args, self.stream

        def announce(last: StreamError, tries: int, wait_s: float) -> None:
            print(
                f"{interruption(last, args.target)} after {self.summary['frames']} answered frames; reconnecting "
                f"in {wait_s:g} s (try {tries} of {args.reconnect})",
                file=sys.stderr,
            )

        rereads_token = args.token_file is not None
        outcome = await continue_stream(
            stream,
            error,
            args.reconnect,
            client_for=self._client_to_reconnect_with,
            before_try=announce,
            rereads_token=rereads_token,
        )
        opened = outcome.opened
        if opened is None:
            last = outcome.last_error if outcome.tries else None
            frames = self.summary["frames"]
            raise StreamEnded(error, frames, self.frames_sent, args.target, outcome.tries, last) from error
        after = "its start" if opened.last_frame_index is None else f"frame {opened.last_frame_index}"
        print(f"continued the stream ({opened.kind.name.lower()}) after {after}", file=sys.stderr)
        await self._clients.close_unused(stream.client)  # a run through many rolling updates holds one connection
        if self.encoder.ring is not None:  # the server may be another now, behind the same address
            await self._check_shared_memory()
        now = self._next_send = time.perf_counter()  # --fps goes on from now, not in a burst for the time lost
        resent = set(stream.unanswered)
        for index in list(self._in_flight):
            if index in resent:  # re-sent: its latency counts from now
                self._in_flight[index] = (self._in_flight[index][0], now)
            else:  # already in the state the stream continues from, and never to be answered
                self._in_flight.pop(index)
                if self.trajectory is not None:
                    self.trajectory.add_missing(index, UNANSWERED)
                self._window.release()

    async def _check_shared_memory(self) -> None:
        """After a reconnect: send the later frames as bytes when the server the stream continued on does not read
        shared memory for this client, saying so (a card that cannot be read leaves it on: the frames' answers will
        say). The frames the reconnect re-sent went with their pixels already (:meth:`ClientStream.reconnect`)."""
        if await refuses_shared_memory(self.stream):
            print(
                "warning: --shared-memory: the server the stream continued on does not read shared memory for this "
                "client; later frames go as bytes",
                file=sys.stderr,
            )
            self.encoder.stop_sharing_memory()

    def _client_to_reconnect_with(self, error: StreamError) -> Client | None:
        """The client the next try reconnects with: a new one after ``SHUTTING_DOWN`` (the stream's connection
        still leads to the draining server, which refuses every new call until it exits; a new connection may
        reach another replica, as one through a Kubernetes Service does), else the stream's own (``None``), its
        token read again (:meth:`_reread_token`). The clients are closed once the stream no longer uses them, and
        by :meth:`close_clients`."""
        if error.code != ErrorCode.SHUTTING_DOWN:
            self._reread_token()
            return None
        return self._clients.new()

    async def close_clients(self) -> None:
        """Close the stream's clients (the first one, the caller's, too: closing it again does nothing)."""
        await self._clients.close()

    def _reread_token(self) -> None:
        """Read ``--token-file`` again for the next call, so that a stream that outlives a token rotation (the old
        token removed from the file meanwhile) reconnects with the current one. A file that cannot be read now, or
        holds no token that can be sent (being rewritten, say), keeps the token in use, with a warning: as the
        server keeps its tokens through a half-written file, a moment's gap must not end the run."""
        if self.args.token_file is None:
            return
        try:
            self.stream.client.use_token(token_from_args(self.args))
        except (OSError, ValueError) as error:
            print(f"warning: {error}; reconnecting with the token read before", file=sys.stderr)


def _server_message_limit(error: StreamError) -> re.Match[str] | None:
    """The sizes in ``error`` when it says the server refused a message over its limit (the message's, the
    limit's), else ``None``."""
    return _SERVER_MESSAGE_LIMIT.search(error.message)


def _warn(message: str) -> None:
    """Print ``message`` to stderr as a warning."""
    print(f"warning: {message}", file=sys.stderr)
