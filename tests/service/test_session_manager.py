"""``SessionManager`` without a network: capacity, reclaim, resume history, hand-off checks, one release path."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from service import wire
from service.engine import ModelCard
from service.errors import ErrorCode, StreamAbort
from service.metrics import Metrics
from service.open_checks import client_address
from service.reply_size import reply_bytes
from service.session_limits import SessionLimits
from service.sessions import SessionManager
from service.types import (
    FrameResult,
    LatencyBreakdown,
    OpenKind,
    OpenRequest,
    Output,
    ResumeRequest,
    StateHandoff,
    StreamOptions,
)

CARD = ModelCard("m", "v1", "torch", "cpu", (24, 24), 4, 16, (12, 12), 8, "")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Owner:
    def __init__(self) -> None:
        self.evicted: list[StreamAbort] = []

    def evict(self, abort: StreamAbort) -> None:
        self.evicted.append(abort)


def make_manager(**limits) -> tuple[SessionManager, Clock]:
    clock = Clock()
    runner = SimpleNamespace(card=CARD)
    manager = SessionManager({"m": runner}, "m", SessionLimits(**limits), Metrics(), clock)  # type: ignore[dict-item]
    manager.phase = "serving"
    return manager, clock


def state(value: float) -> np.ndarray:
    return np.full((4, 16), value, np.float32)


def abort_code(call) -> ErrorCode:
    with pytest.raises(StreamAbort) as error:
        call()
    return error.value.code


def test_stream_gauges_are_exported_before_the_first_stream():
    """The autoscaler reads ``slotstream_streams_active``: a series that appears only with the first stream (or the
    first reaper pass) holds it back."""
    manager, _ = make_manager()
    registry = manager.metrics.registry
    assert registry.get_sample_value("slotstream_streams_active", {"model": "m"}) == 0
    assert registry.get_sample_value("slotstream_streams_detached") == 0


def test_state_bytes_follow_the_resume_history_as_it_fills_and_drops_old_states():
    manager, _ = make_manager(resume_history=2)
    session, _ = manager.open(OpenRequest(), Owner())
    for index in range(5):
        manager.advance(session, index, state(index))
        exported = manager.metrics.registry.get_sample_value("slotstream_state_bytes")
        assert exported == session.state_bytes == min(index + 1, 3) * state(0).nbytes


def test_new_streams_get_unique_ids_tokens_and_stable_slot_ids():
    manager, _ = make_manager()
    a, opened_a = manager.open(OpenRequest(), Owner())
    b, _ = manager.open(OpenRequest(), Owner())
    assert a.stream_id != b.stream_id and a.resume_token != b.resume_token
    assert opened_a.kind == OpenKind.NEW and opened_a.slot_ids == (0, 1, 2, 3)
    assert opened_a.options.idle_timeout_s == 300 and opened_a.options.mask_size == (24, 24)


def test_opens_are_refused_before_serving_and_while_draining():
    manager, _ = make_manager()
    manager.phase = "starting"
    assert abort_code(lambda: manager.open(OpenRequest(), Owner())) == ErrorCode.NOT_READY
    manager.phase = "serving"
    manager.begin_drain()
    assert abort_code(lambda: manager.open(OpenRequest(), Owner())) == ErrorCode.SHUTTING_DOWN


def test_capacity_counts_detached_streams_and_frees_on_release():
    """A detached stream holds its place: a resume may take the last one (a new open would take the detached
    stream's place instead, see test_detached_displacement.py)."""
    manager, _ = make_manager(max_streams=2)
    owner = Owner()
    session, _ = manager.open(OpenRequest(options=StreamOptions(resume_window_s=10)), owner)
    manager.disconnect(session, owner)  # detached: still holds state, still counts
    manager.open(OpenRequest(), Owner())
    assert manager.metrics.registry.get_sample_value("slotstream_streams_active", {"model": "m"}) == 2
    resume = OpenRequest(session.stream_id, resume=ResumeRequest(session.resume_token, None))
    manager.open(resume, Owner())  # at the limit, a resume is never refused for room
    assert abort_code(lambda: manager.open(OpenRequest(), Owner())) == ErrorCode.TOO_MANY_STREAMS
    assert manager.release(session, "closed") is True
    assert manager.release(session, "cancelled") is False  # idempotent
    manager.open(OpenRequest(), Owner())


def test_idle_streams_are_reclaimed_and_their_owner_told_expired():
    manager, clock = make_manager(default_idle_timeout_s=60)
    owner = Owner()
    session, _ = manager.open(OpenRequest(), owner)
    clock.now = 59
    assert manager.reclaim() == 0
    session.inflight = 1  # a frame in the model is not idleness
    clock.now = 120
    assert manager.reclaim() == 0
    session.inflight = 0
    assert manager.reclaim() == 1
    assert session.released == "idle" and session.state is None
    assert [e.code for e in owner.evicted] == [ErrorCode.STREAM_EXPIRED]
    resume = OpenRequest(session.stream_id, resume=ResumeRequest(session.resume_token, None))
    assert abort_code(lambda: manager.open(resume, Owner())) == ErrorCode.STREAM_EXPIRED


def test_a_stream_whose_replies_are_not_taken_for_its_idle_timeout_is_reclaimed_despite_frames_in_flight():
    manager, clock = make_manager(default_idle_timeout_s=60)
    owner = Owner()
    session, _ = manager.open(OpenRequest(), owner)
    session.inflight = 3  # answered frames queued behind a reply the client does not read
    clock.now = 30
    session.reply_waiting_since = 30
    clock.now = 89
    assert manager.reclaim() == 0, "a reply waiting less than the idle timeout is no idleness"
    clock.now = 90
    assert manager.reclaim() == 1
    assert session.released == "stalled" and [e.code for e in owner.evicted] == [ErrorCode.CLIENT_NOT_READING]
    assert "took no reply for 60 s" in owner.evicted[0].message and "open a new stream" in owner.evicted[0].message
    resume = OpenRequest(session.stream_id, resume=ResumeRequest(session.resume_token, None))
    with pytest.raises(StreamAbort, match="its client took no reply within its idle timeout") as refused:
        manager.open(resume, Owner())
    assert refused.value.code == ErrorCode.STREAM_EXPIRED


def test_a_stalled_stream_with_a_resume_window_is_detached_and_resumable():
    """A client that stopped reading is treated like a dropped connection: its call ends, its stream waits for a
    resume, which rewinds to the last answer the client received."""
    manager, clock = make_manager(default_idle_timeout_s=60)
    owner = Owner()
    session, _ = manager.open(OpenRequest(options=StreamOptions(resume_window_s=30)), owner)
    for index in range(5):
        session.advance(index, state(index))
    session.inflight = 3
    session.reply_waiting_since = 0
    clock.now = 60
    assert manager.reclaim() == 0, "detached, not released"
    assert session.released is None and session.owner is None and manager.detached_count() == 1
    assert [e.code for e in owner.evicted] == [ErrorCode.CLIENT_NOT_READING]
    assert "kept for its resume window (30 s)" in owner.evicted[0].message
    resume = OpenRequest(session.stream_id, resume=ResumeRequest(session.resume_token, 1))
    resumed, opened = manager.open(resume, Owner())
    assert resumed is session and opened.last_frame_index == 1
    np.testing.assert_array_equal(session.state, state(1))


def test_stream_options_are_capped_by_the_server():
    manager, _ = make_manager(max_idle_timeout_s=100, max_resume_window_s=5)
    _, opened = manager.open(OpenRequest(options=StreamOptions(idle_timeout_s=1e6, resume_window_s=1e6)), Owner())
    assert opened.options.idle_timeout_s == 100 and opened.options.resume_window_s == 5


def test_rewind_returns_the_state_after_the_acknowledged_frame():
    manager, _ = make_manager(resume_history=4)
    owner = Owner()
    session, _ = manager.open(OpenRequest(options=StreamOptions(resume_window_s=10)), owner)
    for index in range(6):
        session.advance(index, state(index))
    manager.disconnect(session, owner)
    resume = OpenRequest(session.stream_id, resume=ResumeRequest(session.resume_token, 3))
    _, opened = manager.open(resume, Owner())
    assert opened.kind == OpenKind.RESUMED and opened.last_frame_index == 3
    np.testing.assert_array_equal(session.state, state(3))
    assert session.last_accepted_index == 3 and [i for i, _ in session.history][-1] == 3


def test_rewind_tolerates_gaps_from_dropped_frames_but_not_evicted_history():
    manager, _ = make_manager(resume_history=3)
    session, _ = manager.open(OpenRequest(), Owner())
    for index in (0, 2, 5, 9, 11):  # frames 1, 3, 4, 6-8 and 10 were dropped or rejected
        session.advance(index, state(index))
    with pytest.raises(StreamAbort) as error:
        session.rewind(1)  # frame 0's state fell out of the history (3 frames + the fresh state)
    assert error.value.code == ErrorCode.RESUME_POINT_UNAVAILABLE
    session.rewind(7)  # the client's last answer was frame 7 (a drop): the state after frame 5 applies
    np.testing.assert_array_equal(session.state, state(5))
    assert session.last_frame_index == 5 and session.last_accepted_index == 7


def test_resume_after_a_frame_the_stream_never_received_is_refused():
    """Otherwise the stream would expect frames after it, and refuse the client's next frames as not increasing."""
    manager, _ = make_manager()
    session, _ = manager.open(OpenRequest(), Owner())
    assert abort_code(lambda: session.rewind(0)) == ErrorCode.RESUME_POINT_UNAVAILABLE  # no frame yet
    for index in (0, 1):
        session.advance(index, state(index))
    session.last_accepted_index = 1
    with pytest.raises(StreamAbort, match="after frame 99: the stream has received frames up to 1 only") as error:
        session.rewind(99)
    assert error.value.code == ErrorCode.RESUME_POINT_UNAVAILABLE
    # The refused rewind changed nothing: the next frame must still come after frame 1.
    assert (session.last_accepted_index, session.last_frame_index, session.last_received_index) == (1, 1, 1)
    np.testing.assert_array_equal(session.state, state(1))
    session.last_received_index = 3  # frames 2 and 3 were answered without being processed (dropped, rejected)
    session.rewind(3)
    np.testing.assert_array_equal(session.state, state(1))
    assert session.last_accepted_index == 3
    # After a resume the client sends every later frame again: a second resume cannot skip past them.
    for index in range(4, 10):
        session.advance(index, state(index))
    session.rewind(5)
    assert abort_code(lambda: session.rewind(8)) == ErrorCode.RESUME_POINT_UNAVAILABLE


def test_resume_before_any_frame_needs_the_fresh_state_still_in_history():
    manager, _ = make_manager(resume_history=2)
    session, _ = manager.open(OpenRequest(), Owner())
    session.rewind(None)
    assert session.state is None
    for index in range(3):
        session.advance(index, state(index))
    assert abort_code(lambda: session.rewind(None)) == ErrorCode.RESUME_POINT_UNAVAILABLE


def test_resume_evicts_the_previous_owner():
    manager, _ = make_manager()
    first, second = Owner(), Owner()
    session, _ = manager.open(OpenRequest(), first)
    manager.open(OpenRequest(session.stream_id, resume=ResumeRequest(session.resume_token, None)), second)
    assert [e.code for e in first.evicted] == [ErrorCode.TAKEN_OVER] and session.owner is second


def test_a_resume_that_names_another_model_than_the_streams_is_refused():
    """A stream keeps the model it was opened on: a resume naming another served model would feed one model's
    state to the other, so it is refused; one naming the stream's own model, or none, resumes."""
    clock = Clock()
    runners = {name: SimpleNamespace(card=replace(CARD, name=name)) for name in ("a", "b")}
    manager = SessionManager(runners, "a", SessionLimits(), Metrics(), clock)  # type: ignore[arg-type]
    manager.phase = "serving"
    owner = Owner()
    session, _ = manager.open(OpenRequest(model="a"), owner)
    assert session.model == "a"
    resume = ResumeRequest(session.resume_token, None)
    with pytest.raises(StreamAbort) as error:
        manager.open(OpenRequest(session.stream_id, model="b", resume=resume), Owner())
    assert error.value.code == ErrorCode.INVALID_OPEN
    assert f"stream {session.stream_id!r} runs model 'a', not 'b'" in error.value.message
    assert session.owner is owner and not owner.evicted, "a refused resume took the stream over"
    for model in ("a", ""):
        taker = Owner()
        _, opened = manager.open(OpenRequest(session.stream_id, model=model, resume=resume), taker)
        assert opened.kind == OpenKind.RESUMED and session.owner is taker, model


def test_handoff_is_checked_and_continues_from_its_state():
    manager, _ = make_manager()
    good = StateHandoff("s1", "m", "v1", 41, state(1), (7, 8, 9, 10))
    session, opened = manager.open(OpenRequest(handoff=good), Owner())
    assert opened.kind == OpenKind.HANDED_OFF and opened.last_frame_index == 41 and opened.stream_id == "s1"
    assert session.slot_ids == (7, 8, 9, 10) and session.last_accepted_index == 41
    bad = [
        StateHandoff("s2", "m", "v0", 1, state(1), ()),
        StateHandoff("s3", "m", "v1", 1, np.zeros((3, 16), np.float32), ()),
        StateHandoff("s4", "m", "v1", 1, state(np.inf), ()),
        StateHandoff("s5", "m", "v1", 1, state(1), (1, 2)),
        StateHandoff("s8", "m", "v1", 1, state(1), (7, 7, 8, 9)),  # a repeated id names two slots alike
        StateHandoff("s6", "m", "v1", 1, state(-3e20), ()),  # finite, but the model would overflow to NaN on it
    ]
    for handoff in bad:
        assert (
            abort_code(lambda h=handoff: manager.open(OpenRequest(handoff=h), Owner())) == ErrorCode.HANDOFF_MISMATCH
        )
    with pytest.raises(StreamAbort, match=r"slot ids \[7, 7, 8, 9\] repeat an id"):
        manager.open(OpenRequest(handoff=bad[-2]), Owner())
    with pytest.raises(StreamAbort, match=r"a value of magnitude 3e\+20, beyond the 1e\+06"):
        manager.open(OpenRequest(handoff=bad[-1]), Owner())
    large, _ = manager.open(OpenRequest(handoff=StateHandoff("s7", "m", "v1", 1, state(9e5), ())), Owner())
    assert large.stream_id == "s7", "large but within the bound"


def test_a_handed_off_stream_resumes_without_a_frame_index_from_the_handed_off_state():
    """A client that got no reply after the hand-off resumes with ``last_frame_index`` unset, as the proto says."""
    manager, _ = make_manager(resume_history=2)
    handoff = StateHandoff("s1", "m", "v1", 41, state(1), (7, 8, 9, 10))
    session, _ = manager.open(OpenRequest(handoff=handoff, options=StreamOptions(resume_window_s=10)), Owner())
    session.advance(42, state(42))  # processed, but the connection dropped before the reply reached the client
    manager.disconnect(session, session.owner)
    _, opened = manager.open(OpenRequest("s1", resume=ResumeRequest(session.resume_token, None)), Owner())
    assert opened.kind == OpenKind.RESUMED and opened.last_frame_index == 41
    np.testing.assert_array_equal(session.state, state(1))
    assert session.last_accepted_index == 41 and session.slot_ids == (7, 8, 9, 10)
    for index in (42, 43, 44):
        session.advance(index, state(index))
    assert abort_code(lambda: session.rewind(None)) == ErrorCode.RESUME_POINT_UNAVAILABLE  # 41 left the history


def test_disconnect_without_resume_window_releases_and_tombstones():
    manager, _ = make_manager()
    owner = Owner()
    session, _ = manager.open(OpenRequest(), owner)
    manager.disconnect(session, Owner())  # not the owner: nothing happens
    assert session.released is None
    manager.disconnect(session, owner)
    assert session.released == "cancelled"
    resume = OpenRequest(session.stream_id, resume=ResumeRequest(session.resume_token, None))
    with pytest.raises(StreamAbort) as error:
        manager.open(resume, Owner())
    assert error.value.code == ErrorCode.UNKNOWN_STREAM and "without a resume window" in error.value.message


@pytest.mark.parametrize(
    ("end", "reason"),
    [("closed", "its client closed it"), ("error", "ended with an error"), ("drained", "StateHandoff")],
)
def test_resuming_an_ended_stream_says_how_it_ended(end, reason):
    manager, _ = make_manager()
    session, _ = manager.open(OpenRequest(options=StreamOptions(resume_window_s=60)), Owner())
    manager.release(session, end)
    resume = OpenRequest(session.stream_id, resume=ResumeRequest(session.resume_token, None))
    with pytest.raises(StreamAbort) as error:
        manager.open(resume, Owner())
    assert error.value.code == ErrorCode.UNKNOWN_STREAM and reason in error.value.message
    assert "without a resume window" not in error.value.message


def test_long_client_supplied_names_are_cut_in_error_messages():
    """The message travels in the grpc-message trailer (16 KiB at most): a long id or model name is quoted cut,
    so the client still gets the status and error code."""
    manager, _ = make_manager()
    long_name = "m" * 20_000
    for request, code in [
        (OpenRequest("x" * 100_000, resume=ResumeRequest("token", None)), ErrorCode.INVALID_OPEN),
        (OpenRequest("s" * 128, resume=ResumeRequest("token", None)), ErrorCode.UNKNOWN_STREAM),
        (OpenRequest(model=long_name), ErrorCode.UNKNOWN_MODEL),
        (OpenRequest("y" * 100_000), ErrorCode.INVALID_OPEN),
    ]:
        with pytest.raises(StreamAbort) as error:
            manager.open(request, Owner())
        assert error.value.code == code
        assert len(error.value.message) < 1_000, error.value.message[:200]
    with pytest.raises(StreamAbort) as error:
        manager.runner(long_name)
    assert "(20000 characters)" in error.value.message and len(error.value.message) < 1_000


def test_stream_abort_messages_are_capped():
    assert len(StreamAbort(ErrorCode.INVALID_OPEN, "z" * 50_000).message) <= 2048


def test_drain_keeps_detached_streams_for_their_handoff_and_returns_attached_owners():
    """While draining only a detached stream may be resumed (its connection then drains at once, handing the
    state off); everything else is refused, and the detached streams left at the end are freed."""
    manager, _ = make_manager()
    attached, detached = Owner(), Owner()
    manager.open(OpenRequest(), attached)
    parked, _ = manager.open(OpenRequest(options=StreamOptions(resume_window_s=10)), detached)
    left, _ = manager.open(OpenRequest(options=StreamOptions(resume_window_s=10)), Owner())
    manager.disconnect(parked, detached)
    manager.disconnect(left, left.owner)  # type: ignore[arg-type]
    assert manager.begin_drain() == [attached]
    assert parked.released is None and manager.detached_count() == 2
    resume = ResumeRequest(parked.resume_token, None)
    session, opened = manager.open(OpenRequest(stream_id=parked.stream_id, resume=resume), Owner())
    assert session is parked and opened.kind == OpenKind.RESUMED and manager.detached_count() == 1
    assert abort_code(lambda: manager.open(OpenRequest(), Owner())) == ErrorCode.SHUTTING_DOWN
    unknown = OpenRequest(stream_id="gone", resume=ResumeRequest("token", None))
    assert abort_code(lambda: manager.open(unknown, Owner())) == ErrorCode.SHUTTING_DOWN
    # Nobody collected the detached stream's hand-off: its state is lost, counted apart from handed-off streams.
    assert manager.end_drain() == 1 and left.released == "lost" and manager.detached_count() == 0
    released = manager.metrics.registry.get_sample_value
    assert released("slotstream_streams_released_total", {"reason": "lost"}) == 1
    assert released("slotstream_streams_released_total", {"reason": "drained"}) == 0
    manager.disconnect(session, session.owner)  # type: ignore[arg-type]
    # After the drain a dropped connection frees its stream at once, counted as ended by the shutdown.
    assert session.released == "drained"


def test_reply_bytes_bounds_the_serialized_reply():
    """The open-time estimate is at least the size of a real reply with every output at the mask size."""
    options = StreamOptions(outputs=frozenset(Output), mask_size=(30, 40))
    k, d = CARD.num_slots, CARD.slot_dim
    rng = np.random.default_rng(0)
    handoff = StateHandoff("s" * 128, "m", "v1", 2**62, state(1.0), tuple(range(k)))
    result = FrameResult(
        stream_id="s" * 128,
        frame_index=2**62,
        capture_time_ns=2**62,
        camera_frame_id="c" * 2048,
        received_time_ns=2**62,
        completed_time_ns=2**62,
        model_version="v1",
        slot_ids=tuple(range(k)),
        latency=LatencyBreakdown(1.0, 1.0, 1.0, 1.0, 1.0, 8),
        slots=rng.random((k, d), dtype=np.float32),
        segmentation=np.zeros((30, 40), np.uint8),
        soft_masks=rng.random((k, 30, 40), dtype=np.float32),
        state=handoff,
    )
    assert wire.response_to_proto(result).ByteSize() <= reply_bytes(options, CARD)
    uint8 = replace(options, soft_masks_uint8=True, outputs=frozenset({Output.SOFT_MASKS}))
    assert reply_bytes(uint8, CARD) < reply_bytes(options, CARD) - k * 30 * 40 * 3


def test_opens_whose_replies_could_exceed_the_message_limit_are_refused():
    manager, _ = make_manager(max_reply_bytes=64 * 1024)
    soft = StreamOptions(outputs=frozenset({Output.SOFT_MASKS}), mask_size=(64, 64))  # 4 x 64 x 64 x 4 = 64 KiB
    with pytest.raises(StreamAbort) as refused:
        manager.open(OpenRequest(options=soft), Owner())
    assert refused.value.code == ErrorCode.INVALID_OPEN
    assert "64x64" in refused.value.message and "65536 bytes" in refused.value.message
    manager.open(OpenRequest(options=replace(soft, soft_masks_uint8=True)), Owner())


def test_streams_whose_replies_wait_for_their_client_are_counted_as_not_reading():
    manager, clock = make_manager(default_idle_timeout_s=60)
    reading, _ = manager.open(OpenRequest(), Owner())
    stuck, _ = manager.open(OpenRequest(), Owner())

    def not_reading() -> float | None:
        return manager.metrics.registry.get_sample_value("slotstream_streams_not_reading")

    stuck.inflight, stuck.reply_waiting_since = 2, 10.0
    reading.inflight, reading.reply_waiting_since = 1, 10.5
    clock.now = 10.9
    manager.reclaim()
    assert not_reading() == 0, "a reply waiting under a second is normal flow control"
    clock.now = 11.2
    manager.reclaim()
    assert not_reading() == 1
    reading.reply_waiting_since = None  # its client took the reply
    stuck.reply_waiting_since = None
    manager.reclaim()
    assert not_reading() == 0


def test_one_client_address_holds_at_most_its_share_of_the_streams():
    """A client that opens every stream it may (and leaves them waiting for a resume) must not lock out the others;
    a resume moves the stream to the address that resumed it."""
    manager, _ = make_manager(max_streams=10, max_streams_per_client=2)
    hog = "ipv4:10.0.0.7:5000"
    first, _ = manager.open(OpenRequest(options=StreamOptions(resume_window_s=30)), Owner(), peer=hog)
    manager.open(OpenRequest(), Owner(), peer="ipv4:10.0.0.7:5001")  # another port, the same client
    with pytest.raises(StreamAbort, match=r"this client \(10\.0\.0\.7\) holds 2 streams") as refused:
        manager.open(OpenRequest(), Owner(), peer=hog)
    assert refused.value.code == ErrorCode.TOO_MANY_STREAMS
    manager.open(OpenRequest(), Owner(), peer="ipv6:[::1]:7000")  # other clients still get theirs
    manager.disconnect(first, first.owner)  # detached, waiting for a resume: still counted
    resume = OpenRequest(first.stream_id, resume=ResumeRequest(first.resume_token, None))
    manager.open(resume, Owner(), peer="ipv4:10.0.0.8:6000")  # resumed from a new address: counted there
    manager.open(OpenRequest(), Owner(), peer=hog)
    with pytest.raises(StreamAbort, match=r"holds 2 streams"):
        manager.open(OpenRequest(), Owner(), peer=hog)
    unlimited, _ = make_manager(max_streams=10)
    for _ in range(5):
        unlimited.open(OpenRequest(), Owner(), peer=hog)


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:10.0.0.7:5000", "10.0.0.7"),
        ("ipv6:[::1]:5000", "::1"),
        ("ipv6:%5B::1%5D:37744", "::1"),  # as grpcio 1.85 writes it
        ("ipv6:%5Bfe80::1%25eth0%5D:80", "fe80::1%eth0"),
        ("unix:/tmp/s.sock", "unix:/tmp/s.sock"),
        ("", ""),
    ],
)
def test_client_address_drops_the_port(peer, address):
    assert client_address(peer) == address
