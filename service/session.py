"""``Session``: one stream's recurrent state, its resume history and its bookkeeping."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from service.errors import ErrorCode, StreamAbort
from service.runner import ModelRunner
from service.stream_stats import StreamActivity
from service.types import StateHandoff, StreamOptions

ReleaseReason = Literal[
    "closed", "cancelled", "idle", "stalled", "resume_expired", "displaced", "drained", "lost", "error", "ended"
]


class SessionOwner(Protocol):
    """The connection currently serving a session."""

    def evict(self, abort: StreamAbort) -> None:
        """End the connection's stream with ``abort`` (the session is no longer the connection's)."""


@dataclass(eq=False)
class Session:
    """One stream's state and bookkeeping (identity-hashed: it is the micro-batcher's key for the stream).

    Attributes:
        stream_id: the stream's id.
        runner: the model serving it.
        options: effective options.
        resume_token: secret that authorizes a resume.
        slot_ids: the K slot ids (stable for the stream's life).
        state: float32 ``[K, D]`` state after :attr:`last_frame_index`, or ``None`` before the first frame.
        last_frame_index: the last frame folded into :attr:`state`.
        last_accepted_index: the last frame accepted for processing; the next must be larger.
        last_received_index: the largest frame index received (accepted, rejected or dropped): a client can only
            have had answers up to it, so a resume point beyond it is refused.
        opened_after: the frame the stream's first state follows: ``None`` for a fresh state, the hand-off's
            last frame for a handed-off stream (where a resume without a frame index returns to).
        history: ``(frame index, state)`` after each processed frame, oldest first, for resuming.
        last_activity: monotonic time of the last frame received or answered.
        inflight: frames accepted and not yet answered.
        reply_waiting_since: monotonic time the owner's last reply was handed to gRPC, while gRPC has not taken
            it yet (the client is not reading and flow control holds the reply back), else ``None``.
        owner: the connection serving the stream, ``None`` while detached.
        detached_at: monotonic time the connection dropped, while detached.
        released: why the state was freed, once it is.
        opened_at: monotonic time the stream was opened on this server (a hand-off opens it anew).
        client: the address of the client that opened or last resumed it
            (:func:`~service.open_checks.client_address`), for ``--max-streams-per-client``.
        peer: that client's gRPC peer (address and port), for operators (``Admin.ListStreams``).
        activity: the stream's answers and recent timings on this server, for operators.
        frames_processed: frames the model processed for the stream on this server (``SessionManager.advance``), a
            frame processed again after a resume counted again.
        handing_off: a drain sent the stream's hand-off (``StreamClosed``, reason ``SERVER_DRAINING``) on its
            connection, and gRPC has not taken it yet: the stream is kept until it has (then released as
            ``drained``), so that a client whose connection died unnoticed can still collect the hand-off by
            resuming the stream on a new one (``SessionManager.begin_handoff``).
    """

    stream_id: str
    runner: ModelRunner
    options: StreamOptions
    resume_token: str
    slot_ids: tuple[int, ...]
    state: np.ndarray | None = None
    last_frame_index: int | None = None
    last_accepted_index: int | None = None
    last_received_index: int | None = None
    opened_after: int | None = None
    history: deque[tuple[int | None, np.ndarray | None]] = field(default_factory=deque)
    last_activity: float = 0.0
    inflight: int = 0
    reply_waiting_since: float | None = None
    owner: SessionOwner | None = None
    detached_at: float | None = None
    released: ReleaseReason | None = None
    opened_at: float = 0.0
    frames_processed: int = 0
    client: str = ""
    peer: str = ""
    activity: StreamActivity = field(default_factory=StreamActivity)
    handing_off: bool = False

    @property
    def model(self) -> str:
        """Name of the model serving the stream."""
        return self.runner.card.name

    @property
    def model_version(self) -> str:
        """Version of the model serving the stream."""
        return self.runner.card.version

    @property
    def state_bytes(self) -> int:
        """Bytes held by the state and its history."""
        return sum(state.nbytes for _, state in self.history if state is not None)

    def advance(self, frame_index: int, state: np.ndarray) -> int:
        """Fold a processed frame into the state; returns the change of :attr:`state_bytes` (the new state, less
        the oldest one when the full history drops it)."""
        self.state = state
        self.last_frame_index = frame_index
        if self.last_received_index is None or frame_index > self.last_received_index:
            self.last_received_index = frame_index
        dropped = self.history[0][1] if self.history and len(self.history) == self.history.maxlen else None
        self.history.append((frame_index, state))
        return state.nbytes - (dropped.nbytes if dropped is not None else 0)

    def handoff(self) -> StateHandoff | None:
        """The current state as a :class:`StateHandoff`, or ``None`` before the first frame."""
        if self.state is None or self.last_frame_index is None:
            return None
        return StateHandoff(
            self.stream_id, self.model, self.model_version, self.last_frame_index, self.state, self.slot_ids
        )

    def rewind(self, last_frame_index: int | None) -> None:
        """Return to the state right after ``last_frame_index`` (``None``: the state the stream was opened with).

        Frames processed after it (whose results the client never received) are forgotten; the client
        re-sends them.

        Raises:
            StreamAbort: ``RESUME_POINT_UNAVAILABLE`` when that state is older than the kept history, or the
                frame is newer than any the stream received (the client cannot have had its answer).
        """
        if last_frame_index is None:
            last_frame_index = self.opened_after  # a handed-off stream starts after the hand-off's frame
        target = -math.inf if last_frame_index is None else last_frame_index
        entries = list(self.history)
        newest = self.last_received_index
        if last_frame_index is not None and (newest is None or last_frame_index > newest):
            received = "no frame" if newest is None else f"frames up to {newest} only"
            raise StreamAbort(
                ErrorCode.RESUME_POINT_UNAVAILABLE,
                f"cannot resume stream {self.stream_id!r} after frame {last_frame_index}: the stream has received "
                f"{received}, so that frame was never answered; resume after the last frame whose answer arrived",
            )
        kept = [i for i, (index, _) in enumerate(entries) if (-math.inf if index is None else index) <= target]
        oldest = entries[0][0] if entries else None
        if not kept or (last_frame_index is None and oldest is not None):
            kept_range = f"frames {oldest} to {entries[-1][0]}" if entries else "no frames"
            point = "from its start" if last_frame_index is None else f"after frame {last_frame_index}"
            raise StreamAbort(
                ErrorCode.RESUME_POINT_UNAVAILABLE,
                f"cannot resume stream {self.stream_id!r} {point}: this server only keeps the state after "
                f"{kept_range} (its resume history, --resume-history frames), and the stream ran further ahead of "
                "the answers its client read; open a new stream (or continue from a state hand-off), and keep "
                "fewer frames unanswered, or raise --resume-history",
            )
        newest = kept[-1]
        while len(self.history) > newest + 1:
            self.history.pop()
        self.last_frame_index, self.state = entries[newest]
        self.last_accepted_index = last_frame_index
        self.last_received_index = last_frame_index  # the client sends every later frame again
