"""``SessionManager``: the recurrent state of every stream, and its whole lifecycle.

A :class:`Session` is a stream's state (its previous slots, plus a short history for resuming), its options
and its bookkeeping. It outlives connections: when a connection drops, a stream opened with a resume window
is *detached* and can be resumed on a new connection until the window passes, unless a new stream needs its
place first (a detached stream is kept on a best-effort basis: see :meth:`SessionManager._room_for`). Every path
that frees state (close, cancel, idle reclaim, resume window expiry, displacement, drain, error, take-over) goes
through :meth:`SessionManager.release`, which is idempotent.

What an open is checked against lives beside it: the server's limits and a new stream's effective options in
:mod:`service.session_limits`, the stream id, client address and hand-off checks in :mod:`service.open_checks`,
reply sizes and the reply budget's room in :mod:`service.reply_size`, and what a client is told about an ended
stream in :mod:`service.stream_endings`.

All methods run on the event loop thread; nothing here blocks.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import secrets
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import numpy as np

from service.errors import ErrorCode, StreamAbort, quoted
from service.logs import RateLimitedWarning
from service.metrics import Metrics
from service.open_checks import check_handoff, check_stream_id, client_address
from service.reply_budget import ReplyBudget
from service.reply_size import check_reply_room, reply_bytes
from service.runner import ModelRunner
from service.session import ReleaseReason, Session, SessionOwner
from service.session_limits import SessionLimits, clamped_options, options_for_log
from service.stream_endings import stalled_message, stream_gone
from service.types import MIN_IDLE_TIMEOUT_S, OpenKind, OpenRequest, StateHandoff, StreamOpened

__all__ = [
    "ReleaseReason",
    "Session",
    "SessionManager",
    "SessionOwner",
]

Phase = Literal["starting", "serving", "draining", "stopped"]

_TOMBSTONES = 10_000
NOT_READING_AFTER_S = 1.0
"""How long a finished reply may wait for its client before ``slotstream_streams_not_reading`` counts the stream."""
_log = logging.getLogger(__name__)


def _in_use_message(stream_id: str, handoff: StateHandoff | None) -> str:
    """The refusal of a new stream or hand-off under ``stream_id``, which is in use; ``handoff``: the hand-off whose
    id the open took (it named none), else ``None``."""
    if handoff is None:
        return (
            f"stream id {quoted(stream_id)} is in use; to continue that stream resume it with its resume token, "
            "or leave stream_id empty to get a fresh id"
        )
    return (
        f"stream id {quoted(stream_id)}, the hand-off's (the open named no stream_id), is in use on this server: to "
        "continue the hand-off under another id, set OpenStream.stream_id to a new id; to continue the stream that "
        "holds the id, resume it with its resume token instead"
    )


def _check_idle_timeout(idle_timeout_s: float) -> None:
    """Refuse an open that asks for an idle timeout under :data:`MIN_IDLE_TIMEOUT_S` (0, the server's default, and
    values :meth:`SessionLimits.effective_options` refuses, pass).

    Raises:
        StreamAbort: ``INVALID_OPEN``.
    """
    if 0 < idle_timeout_s < MIN_IDLE_TIMEOUT_S:
        raise StreamAbort(
            ErrorCode.INVALID_OPEN,
            f"invalid stream options: idle_timeout_s {idle_timeout_s:g} is below the least this server takes, "
            f"{MIN_IDLE_TIMEOUT_S:g} s (the stream would expire between frames); ask for {MIN_IDLE_TIMEOUT_S:g} s or "
            "more, or 0 for the server's default",
        )


def _detached_longest(sessions: Iterable[Session]) -> Session | None:
    """Of ``sessions``, the one detached longest, or ``None`` when none is detached."""
    detached = [s for s in sessions if s.detached_at is not None]
    return min(detached, key=lambda s: s.detached_at or 0.0, default=None)


class SessionManager:
    """Opens, resumes, hands off, reclaims and releases sessions.

    Args:
        runners: the served models by name.
        default_model: name used when a client names none.
        limits: server-wide limits.
        metrics: where to count.
        clock: monotonic clock (injectable for tests).

    Raises:
        ValueError: ``default_model`` is not among ``runners``.
    """

    def __init__(
        self,
        runners: Mapping[str, ModelRunner],
        default_model: str,
        limits: SessionLimits,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if default_model not in runners:
            raise ValueError(f"default model {default_model!r} is not among {sorted(runners)}")
        self.runners = dict(runners)
        self.default_model = default_model
        self.limits = limits
        self.metrics = metrics
        self.clock = clock
        self.phase: Phase = "starting"
        self.sessions: dict[str, Session] = {}
        self._tombstones: OrderedDict[str, str] = OrderedDict()
        self.reply_budget = ReplyBudget(limits.reply_budget_bytes)
        self.on_release: Callable[[Session], None] | None = None
        """Called after a session is released (the server frees a model version no stream runs any more)."""
        # one client opening and dropping streams at the limit decides how often streams are displaced
        self._log_displaced = RateLimitedWarning(
            _log,
            "detached stream displaced: the stream limit was reached and a new stream took its place",
            "displaced",
            clock=clock,
        )
        metrics.reply_budget_bytes.set(limits.reply_budget_bytes)
        for model in self.runners:
            metrics.add_model(model)
        self._update_gauges()  # exported from the start: a missing series holds the autoscaler back

    # -- queries ------------------------------------------------------------------------------------------

    def demand(self, runner: ModelRunner) -> int:
        """Streams run by ``runner`` attached to a connection with a frame accepted and not yet answered (decoding,
        queued or running): the ones a batch may wait for. An open stream with no frame in flight is not counted,
        so a lone active stream is never held back waiting for an idle one's next frame; nor is a stream of another
        version of the model (during a reload), whose frames go to another runner."""
        return sum(1 for s in self.sessions.values() if s.owner is not None and s.runner is runner and s.inflight > 0)

    def streams_of(self, runner: ModelRunner) -> int:
        """Streams held (attached or not) that ``runner`` runs."""
        return sum(1 for session in self.sessions.values() if session.runner is runner)

    def runner(self, model: str) -> ModelRunner:
        """The runner of ``model`` (``""``: the default).

        Raises:
            StreamAbort: ``UNKNOWN_MODEL``.
        """
        name = model or self.default_model
        runner = self.runners.get(name)
        if runner is None:
            raise StreamAbort(
                ErrorCode.UNKNOWN_MODEL,
                f"unknown model {quoted(model)}; this server serves: {', '.join(self.runners)}",
            )
        return runner

    # -- reply budget -------------------------------------------------------------------------------------

    def reserve_replies(self, reply_bytes: int, wanted: int) -> int:
        """Reserve room in the server's reply budget for up to ``wanted`` unread replies of ``reply_bytes`` each (at
        least one) for a stream's call; :meth:`release_replies` gives it back.

        Returns:
            The replies reserved (see :meth:`ReplyBudget.reserve`)."""
        replies = self.reply_budget.reserve(reply_bytes, wanted)
        self.metrics.reply_budget_reserved_bytes.set(self.reply_budget.reserved_bytes)
        return replies

    def release_replies(self, reserved_bytes: int) -> None:
        """Give back ``reserved_bytes`` taken with :meth:`reserve_replies`, when the call that took them ends."""
        self.reply_budget.release(reserved_bytes)
        self.metrics.reply_budget_reserved_bytes.set(self.reply_budget.reserved_bytes)

    # -- opening ------------------------------------------------------------------------------------------

    def open(self, request: OpenRequest, owner: SessionOwner, peer: str = "") -> tuple[Session, StreamOpened]:
        """Open a new stream, resume one, or continue one from a hand-off, and attach it to ``owner``.

        Logs ``stream opened`` (or ``stream resumed``) with the stream id, ``peer`` (the client's address), the
        model, the effective options and the resume window; ``stream opened`` also has ``clamped``, the options
        the server lowered to its maximum, ``{name: {"asked": ..., "given": ...}}`` (``{}`` when none). A refused
        open is counted in ``slotstream_open_rejected_total`` but not logged here: the call it ends is logged where
        it ends (the servicer's ``refused a call``), so each refusal makes one line. A new stream that finds the
        server, or its client's address, at its stream limit takes the place of a detached stream (released as
        ``displaced`` and logged ``detached stream displaced``) where there is one (:meth:`_room_for`).

        Raises:
            StreamAbort: the open is refused; the code says why (see the proto's status list).
        """
        try:
            # While draining, only a detached stream may come back, to collect its hand-off (see begin_drain).
            if self.phase != "serving" and not (self.phase == "draining" and request.resume is not None):
                raise self._not_serving()
            if request.resume is not None and request.handoff is not None:
                raise StreamAbort(ErrorCode.INVALID_OPEN, "set either resume or handoff in an open, not both")
            if request.resume is not None:
                return self._resume(request, owner, peer)
            return self._open_fresh(request, owner, peer)
        except StreamAbort as abort:
            self.metrics.open_rejected.labels(abort.code.name.lower()).inc()
            raise

    def _open_fresh(self, request: OpenRequest, owner: SessionOwner, peer: str) -> tuple[Session, StreamOpened]:
        runner = self.runner(request.model)
        handoff = request.handoff
        stream_id = request.stream_id or (handoff.stream_id if handoff else "") or uuid.uuid4().hex
        check_stream_id(stream_id)
        if stream_id in self.sessions:
            taken_from = handoff if handoff is not None and not request.stream_id else None
            raise StreamAbort(ErrorCode.STREAM_ID_IN_USE, _in_use_message(stream_id, taken_from))
        client = client_address(peer)
        displaced = self._room_for(client)
        _check_idle_timeout(request.options.idle_timeout_s)
        options = self.limits.effective_options(request.options, runner.card)
        clamped = clamped_options(request.options, options)
        slot_ids = tuple(range(runner.card.num_slots))
        session = Session(stream_id, runner, options, secrets.token_urlsafe(24), slot_ids, opened_at=self.clock())
        session.client, session.peer = client, peer
        session.history = deque(maxlen=self.limits.resume_history + 1)
        kind = OpenKind.NEW
        if handoff is not None:
            check_handoff(handoff, runner.card)
            session.slot_ids = handoff.slot_ids or slot_ids
            session.last_accepted_index = session.opened_after = handoff.last_frame_index
            session.last_received_index = handoff.last_frame_index
            session.advance(handoff.last_frame_index, np.ascontiguousarray(handoff.state, dtype=np.float32))
            kind = OpenKind.HANDED_OFF
        else:
            session.history.append((None, None))
        check_reply_room(self.reply_budget, options, runner.card)
        if displaced is not None:  # only now: a refused open displaces nothing
            self._displace(displaced, stream_id, peer)
        self.sessions[stream_id] = session
        self._tombstones.pop(stream_id, None)
        self._attach(session, owner)
        self.metrics.streams_opened.labels(runner.card.name, kind.name.lower()).inc()
        self._update_gauges()
        _log.info(
            "stream opened",
            extra={
                "stream_id": stream_id,
                "kind": kind.name.lower(),
                "model": session.model,
                "model_version": session.model_version,
                "peer": peer,
                "options": options_for_log(options),
                "resume_window_s": options.resume_window_s,
                "clamped": clamped,
            },
        )
        return session, self._opened(session, kind)

    def _room_for(self, client: str) -> Session | None:
        """Make sure a new stream of ``client`` (its address, ``""`` when unknown) fits the stream limits; returns
        the detached stream it is to take the place of, ``None`` when it fits as it is.

        A detached stream is kept for its resume window on a best-effort basis: streams nobody comes back for
        must not lock connected clients out for their whole windows. So when the server holds its
        ``max_streams``, or the client's address its ``max_streams_per_client``, the new stream takes the place
        of a detached one: one of its own address's when it has any (the address that needs the room gives it
        first; at its own limit only its own may go, so an address never holds more than its share), else, at
        the server's limit, anyone's; of those, the one detached longest. Longest rather than nearest the end of
        its resume window: the longer a stream has waited, the less likely its client is to come back (a client
        that reconnects does so within seconds, and its stream goes last), and a client cannot shield its
        streams by asking for a long window. The limits themselves hold: with no detached stream to give way,
        the open is refused as before. A draining server displaces nothing: it opens no new stream (see
        :meth:`open`), and keeps its detached streams for their clients to collect their hand-offs.

        Raises:
            StreamAbort: ``TOO_MANY_STREAMS``: at the limit with no detached stream to take the place of.
        """
        own = [s for s in self.sessions.values() if client and s.client == client]
        most = self.limits.max_streams_per_client
        at_client_limit = bool(most and client and len(own) >= most)
        if not at_client_limit and len(self.sessions) < self.limits.max_streams:
            return None
        displaced = _detached_longest(own)
        if displaced is None and at_client_limit:
            raise StreamAbort(
                ErrorCode.TOO_MANY_STREAMS,
                f"this client ({client}) holds {most} streams of this server, the most one client address may hold "
                "(--max-streams-per-client), all of them on open connections: close one before opening another",
            )
        if displaced is None:
            displaced = _detached_longest(self.sessions.values())
        if displaced is None:
            raise StreamAbort(
                ErrorCode.TOO_MANY_STREAMS,
                f"this server holds its maximum of {self.limits.max_streams} streams, all of them on open "
                "connections; retry later or connect to another replica",
            )
        return displaced

    def _displace(self, session: Session, stream_id: str, peer: str) -> None:
        """Release the detached ``session`` (reason ``displaced``) to make room for the new stream ``stream_id``
        of ``peer``; a later resume of it is refused ``UNKNOWN_STREAM``, saying so. Logged at most once per
        :data:`~service.logs.WARNING_INTERVAL_S`, the line counting the displacements it stands for (``displaced``):
        the metric counts each."""
        assert session.detached_at is not None
        detached_s = round(self.clock() - session.detached_at, 3)
        self.release(session, "displaced")
        self._log_displaced(
            "displaced",
            stream_id=session.stream_id,
            detached_s=detached_s,
            resume_window_s=session.options.resume_window_s,
            client=session.client,
            new_stream_id=stream_id,
            peer=peer,
        )

    def _resume(self, request: OpenRequest, owner: SessionOwner, peer: str) -> tuple[Session, StreamOpened]:
        assert request.resume is not None
        if not request.stream_id:
            raise StreamAbort(ErrorCode.INVALID_OPEN, "a resume needs the stream_id of the stream to resume")
        check_stream_id(request.stream_id)
        session = self.sessions.get(request.stream_id)
        if session is None:
            raise self._not_serving() if self.phase == "draining" else self._gone(request.stream_id)
        if not hmac.compare_digest(session.resume_token.encode(), request.resume.resume_token.encode()):
            raise StreamAbort(
                ErrorCode.WRONG_RESUME_TOKEN,
                f"wrong resume token for stream {quoted(request.stream_id)}: use the token from its StreamOpened",
            )
        if request.model and self.runner(request.model).card.name != session.model:  # any version of it
            raise StreamAbort(
                ErrorCode.INVALID_OPEN,
                f"stream {session.stream_id!r} runs model {session.model!r}, not {quoted(request.model)}",
            )
        session.rewind(request.resume.last_frame_index)
        previous = session.owner
        if previous is not None and previous is not owner:
            previous.evict(
                StreamAbort(ErrorCode.TAKEN_OVER, f"stream {session.stream_id!r} was resumed on another connection")
            )
        self._attach(session, owner)
        session.client, session.peer = client_address(peer), peer  # its new address counts it from now on
        self.metrics.streams_opened.labels(session.model, "resumed").inc()
        self._update_gauges()
        _log.info(
            "stream resumed",
            extra={
                "stream_id": session.stream_id,
                "after_frame": session.last_frame_index,
                "peer": peer,
                "resume_window_s": session.options.resume_window_s,
            },
        )
        return session, self._opened(session, OpenKind.RESUMED)

    def _attach(self, session: Session, owner: SessionOwner) -> None:
        session.owner = owner
        session.detached_at = None
        session.handing_off = False  # a drain sends the hand-off on the new connection
        session.activity.unanswered += session.inflight  # a take-over: the old call's frames get no answer here
        session.inflight = 0
        session.reply_waiting_since = None
        session.last_activity = self.clock()

    def _opened(self, session: Session, kind: OpenKind) -> StreamOpened:
        return StreamOpened(
            stream_id=session.stream_id,
            resume_token=session.resume_token,
            model=session.model,
            model_version=session.model_version,
            options=session.options,
            kind=kind,
            last_frame_index=session.last_frame_index,
            slot_ids=session.slot_ids,
            max_reply_bytes=reply_bytes(session.options, session.runner.card),
            resume_history=self.limits.resume_history,
        )

    def release_reason(self, stream_id: str) -> str | None:
        """Why the stream ``stream_id`` was released, while this server remembers it (the last 10,000 released);
        ``None`` for a stream it does not remember."""
        return self._tombstones.get(stream_id)

    def _gone(self, stream_id: str) -> StreamAbort:
        return stream_gone(stream_id, self._tombstones.get(stream_id))

    def _not_serving(self) -> StreamAbort:
        if self.phase == "starting":
            return StreamAbort(ErrorCode.NOT_READY, "the model is still loading or warming up; retry in a moment")
        return StreamAbort(ErrorCode.SHUTTING_DOWN, "this server is shutting down; connect to another replica")

    # -- during a stream ----------------------------------------------------------------------------------

    def touch(self, session: Session) -> None:
        """Record activity on ``session`` (a frame received or answered)."""
        session.last_activity = self.clock()

    # -- ending -------------------------------------------------------------------------------------------

    def disconnect(self, session: Session, owner: SessionOwner, reason: ReleaseReason = "cancelled") -> None:
        """The connection ``owner`` ended without closing the stream: detach it for its resume window, or
        release it at once (for ``reason``) when it has none. Does nothing if ``owner`` no longer holds it."""
        if session.released is not None or session.owner is not owner:
            return
        if session.handing_off and (self.phase == "stopped" or session.options.resume_window_s <= 0):
            self.release(session, "lost")  # its hand-off was never taken, and no client can collect it now
        elif session.options.resume_window_s > 0 and self.phase != "stopped":
            session.owner = None
            session.activity.unanswered += session.inflight
            session.inflight = 0
            session.reply_waiting_since = None
            session.detached_at = self.clock()
            self._update_gauges()
            _log.info("stream detached", extra={"stream_id": session.stream_id})
        else:
            # Once the drain has ended, what is still connected is cut off by the shutdown, not by its client.
            self.release(session, "drained" if self.phase == "stopped" else reason)

    def advance(self, session: Session, frame_index: int, state: np.ndarray) -> None:
        """Fold a processed frame into ``session`` (:meth:`Session.advance`), keeping ``slotstream_state_bytes``
        current as its resume history fills, and count it in :attr:`Session.frames_processed`."""
        self.metrics.state_bytes.inc(session.advance(frame_index, state))
        session.frames_processed += 1

    def release(self, session: Session, reason: ReleaseReason) -> bool:
        """Free ``session``'s state. Idempotent: returns ``False`` if it was already released.

        Logs ``stream released`` with the stream id, ``reason``, the frames processed on this server and the
        seconds since it was opened here (``duration_s``, detached time included).
        """
        if session.released is not None:
            return False
        session.released = reason
        session.owner = None
        session.state = None
        session.history.clear()
        if self.sessions.get(session.stream_id) is session:
            del self.sessions[session.stream_id]
        self._tombstones[session.stream_id] = reason
        while len(self._tombstones) > _TOMBSTONES:
            self._tombstones.popitem(last=False)
        self.metrics.streams_released.labels(reason).inc()
        self._update_gauges()
        _log.info(
            "stream released",
            extra={
                "stream_id": session.stream_id,
                "reason": reason,
                "frames": session.frames_processed,
                "duration_s": round(self.clock() - session.opened_at, 3),
            },
        )
        if self.on_release is not None:
            self.on_release(session)
        return True

    def end(self, session: Session, reason: str) -> None:
        """End ``session`` for an operator (``Admin.EndStream``): release it (reason ``ended``) and end the call
        serving it, if any, with ``ENDED_BY_OPERATOR`` and ``reason``; a later resume is refused, saying an
        operator ended it. Logged as a warning (``stream ended by an operator``)."""
        owner = session.owner
        self.release(session, "ended")
        _log.warning(
            "stream ended by an operator",
            extra={"stream_id": session.stream_id, "reason": reason, "peer": session.peer},
        )
        if owner is not None:
            said = f": {reason}" if reason else ""
            message = (
                f"an operator ended stream {quoted(session.stream_id)}{said}; its state was freed, so do not resume it"
            )
            owner.evict(StreamAbort(ErrorCode.ENDED_BY_OPERATOR, message))

    def reclaim(self) -> int:
        """Release idle streams and detached streams past their resume window, and take stalled streams from
        their connections; returns how many were released.

        A stream is idle when no frame was received or answered for its idle timeout and no frame is in flight;
        it is released (reason ``idle``) and its connection ends with ``STREAM_EXPIRED``. It is stalled when,
        for as long, frames are in flight and its client has taken no reply (it stopped reading: gRPC flow
        control holds the replies, which would otherwise keep the stream in flight for ever); its connection ends
        with ``CLIENT_NOT_READING``, and the stream is detached for its resume window like a dropped connection
        (a resume continues it from the last answer the client received), or released (reason ``stalled``)
        when it has none. Frames still waiting for the model (a slow or stalled model) keep a stream alive.
        """
        now = self.clock()
        reclaimed = 0
        for session in list(self.sessions.values()):
            timeout = session.options.idle_timeout_s
            if session.detached_at is not None:
                if now - session.detached_at >= session.options.resume_window_s:
                    reclaimed += self.release(session, "resume_expired")
                continue
            if now - session.last_activity < timeout:
                continue
            waiting = session.reply_waiting_since
            stalled = session.inflight > 0 and waiting is not None and now - waiting >= timeout
            if session.inflight > 0 and not stalled:
                continue
            owner = session.owner
            if not stalled:
                reclaimed += self.release(session, "idle")
                if owner is not None:
                    owner.evict(self._gone(session.stream_id))
                continue
            resumable = session.options.resume_window_s > 0 and owner is not None and self.phase != "stopped"
            if resumable:
                assert owner is not None
                self.disconnect(session, owner)
            else:
                reclaimed += self.release(session, "stalled")
            _log.warning(
                "stream stalled: its client took no reply for its idle timeout",
                extra={"stream_id": session.stream_id, "detached": resumable, "idle_timeout_s": timeout},
            )
            if owner is not None:
                owner.evict(StreamAbort(ErrorCode.CLIENT_NOT_READING, stalled_message(session, resumable)))
        self._update_gauges()
        return reclaimed

    async def run_reaper(self) -> None:
        """Call :meth:`reclaim` periodically, forever (cancel the task to stop)."""
        shortest = min(self.limits.default_idle_timeout_s, self.limits.max_resume_window_s or math.inf)
        interval = min(1.0, max(0.05, shortest / 4))
        while True:
            await asyncio.sleep(interval)
            self.reclaim()

    def begin_drain(self) -> list[SessionOwner]:
        """Refuse new opens from now on; return the connections that hold streams (to be drained).

        Detached streams are kept: a client that resumes one during the drain gets its hand-off state (the
        connection drains right after the open) and continues on another replica. :meth:`end_drain` frees those
        still detached when the drain ends; the reaper frees them earlier when their resume window ends.
        """
        self.phase = "draining"
        return [session.owner for session in self.sessions.values() if session.owner is not None]

    def detached_count(self) -> int:
        """Streams waiting for their client to resume them."""
        return sum(1 for session in self.sessions.values() if session.detached_at is not None)

    def collectable_count(self) -> int:
        """During a drain, streams whose client may still resume them on a new connection to collect the hand-off:
        those detached, and those whose hand-off gRPC has not taken from their connection yet (its client may be
        gone without the server knowing: :meth:`begin_handoff`)."""
        return sum(1 for s in self.sessions.values() if s.detached_at is not None or s.handing_off)

    def begin_handoff(self, session: Session) -> None:
        """The drain sent ``session``'s hand-off on its connection: keep the stream until gRPC takes the message
        (:meth:`release` it as ``drained`` then), for a resume on another connection meanwhile takes it over as
        any resume does and gets the hand-off there. Its connection ending first is :meth:`disconnect`."""
        session.handing_off = True

    def end_drain(self) -> int:
        """The drain is over: free every detached stream (nobody can collect its hand-off any more: released as
        ``lost``), and from now on free a stream whose connection ends at once. Returns how many were freed."""
        self.phase = "stopped"
        detached = [session for session in self.sessions.values() if session.detached_at is not None]
        return sum(self.release(session, "lost") for session in detached)

    def _update_gauges(self) -> None:
        counts = dict.fromkeys(self.runners, 0)
        for session in self.sessions.values():
            counts[session.model] = counts.get(session.model, 0) + 1
        for model, count in counts.items():
            self.metrics.streams_active.labels(model).set(count)
        self.metrics.streams_detached.set(sum(1 for s in self.sessions.values() if s.detached_at is not None))
        now = self.clock()
        behind = sum(
            1
            for s in self.sessions.values()
            if s.reply_waiting_since is not None and now - s.reply_waiting_since >= NOT_READING_AFTER_S
        )
        self.metrics.streams_not_reading.set(behind)
        self.metrics.state_bytes.set(sum(s.state_bytes for s in self.sessions.values()))
