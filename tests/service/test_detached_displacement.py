"""A detached stream is kept on a best-effort basis: at the stream limits a new open takes the place of one, the one
detached longest, rather than being refused while streams nobody may come back for hold every place."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from service_helpers import make_video, run, wait_until
from test_session_manager import Clock, Owner, abort_code, make_manager

from service.client import Client, StreamError, StreamOptions
from service.errors import ErrorCode, StreamAbort
from service.session import Session
from service.sessions import SessionManager
from service.types import OpenRequest, ResumeRequest

WINDOW = StreamOptions(resume_window_s=30)


def detached(manager: SessionManager, clock: Clock, at: float, peer: str = "", window: float = 30) -> Session:
    """A stream opened from ``peer`` whose connection dropped at time ``at``."""
    clock.now = at
    owner = Owner()
    session, _ = manager.open(OpenRequest(options=StreamOptions(resume_window_s=window)), owner, peer=peer)
    manager.disconnect(session, owner)
    assert session.detached_at == at
    return session


def resume(manager: SessionManager, session: Session, peer: str = "") -> None:
    request = OpenRequest(session.stream_id, resume=ResumeRequest(session.resume_token, None))
    manager.open(request, Owner(), peer=peer)


def displaced_count(manager: SessionManager) -> float | None:
    return manager.metrics.registry.get_sample_value("slotstream_streams_released_total", {"reason": "displaced"})


def test_the_displaced_count_is_exported_before_the_first():
    manager, _ = make_manager()
    assert displaced_count(manager) == 0


def test_a_full_server_displaces_the_stream_detached_longest(caplog):
    """Longest detached, not nearest its window's end: the stream that dropped last (a client maybe reconnecting
    right now) stays, though a short window would end it sooner."""
    caplog.set_level(logging.WARNING, logger="service.sessions")
    manager, clock = make_manager(max_streams=3)
    oldest = detached(manager, clock, at=1, window=300)  # its window ends at 301
    recent = detached(manager, clock, at=5, window=10)  # its window ends at 15
    manager.open(OpenRequest(), Owner())
    clock.now = 6
    newcomer, _ = manager.open(OpenRequest(), Owner(), peer="ipv4:10.0.0.9:4000")
    assert oldest.released == "displaced" and recent.released is None
    assert oldest.stream_id not in manager.sessions and manager.sessions[newcomer.stream_id] is newcomer
    assert len(manager.sessions) == 3 and displaced_count(manager) == 1
    (line,) = [r for r in caplog.records if r.getMessage().startswith("detached stream displaced")]
    assert line.stream_id == oldest.stream_id and line.new_stream_id == newcomer.stream_id
    assert line.detached_s == 5 and line.peer == "ipv4:10.0.0.9:4000"
    with pytest.raises(
        StreamAbort, match=r"has ended: its connection dropped and.*a new stream took its place"
    ) as gone:
        resume(manager, oldest)
    assert gone.value.code == ErrorCode.UNKNOWN_STREAM
    resume(manager, recent)  # the one that dropped last is still there


def test_displacements_are_logged_at_a_limited_rate_and_each_counted(caplog):
    """A client that opens and drops streams at the limit decides how often streams are displaced: one line per
    interval, the next carrying how many displacements it stands for; the metric counts every one."""
    caplog.set_level(logging.WARNING, logger="service.sessions")
    manager, clock = make_manager(max_streams=1)
    for second in range(1, 6):  # each new stream displaces the one before it, detached a second ago
        detached(manager, clock, at=second)
    clock.now = 20  # past the interval
    detached(manager, clock, at=20)
    lines = [r for r in caplog.records if r.getMessage().startswith("detached stream displaced")]
    assert displaced_count(manager) == 5
    assert [line.displaced for line in lines] == [1, 4], "the first at once, then the four since in one line"


def test_a_full_server_with_only_attached_streams_still_refuses():
    manager, _ = make_manager(max_streams=2)
    attached = [manager.open(OpenRequest(options=WINDOW), Owner())[0] for _ in range(2)]
    with pytest.raises(StreamAbort, match="maximum of 2 streams, all of them on open connections") as refused:
        manager.open(OpenRequest(), Owner())
    assert refused.value.code == ErrorCode.TOO_MANY_STREAMS
    assert all(s.released is None for s in attached) and displaced_count(manager) == 0


def test_a_refused_open_displaces_nothing():
    """An open refused for another reason after the room check (here its options) leaves the detached stream."""
    manager, clock = make_manager(max_streams=1)
    waiting = detached(manager, clock, at=1)
    invalid = OpenRequest(options=StreamOptions(idle_timeout_s=0.5))
    assert abort_code(lambda: manager.open(invalid, Owner())) == ErrorCode.INVALID_OPEN
    assert waiting.released is None and displaced_count(manager) == 0


def test_a_client_gives_its_own_detached_streams_first():
    """At the server's limit the address that needs room gives its own detached stream, even a newer one; one with
    none takes anyone's."""
    manager, clock = make_manager(max_streams=3)
    other = detached(manager, clock, at=1, peer="ipv4:10.0.0.1:1000")
    own = detached(manager, clock, at=2, peer="ipv4:10.0.0.2:2000")
    manager.open(OpenRequest(), Owner(), peer="ipv4:10.0.0.3:3000")
    manager.open(OpenRequest(), Owner(), peer="ipv4:10.0.0.2:2001")
    assert own.released == "displaced" and other.released is None
    manager.open(OpenRequest(), Owner(), peer="ipv4:10.0.0.4:4000")
    assert other.released == "displaced" and displaced_count(manager) == 2


def test_at_its_own_limit_a_client_displaces_only_its_own_streams():
    """``--max-streams-per-client`` still bounds what an address holds: its own detached stream makes room for its
    own new one, and with none left it is refused, whoever else waits detached."""
    manager, clock = make_manager(max_streams=10, max_streams_per_client=2)
    hog = "ipv4:10.0.0.7:5000"
    others = detached(manager, clock, at=1, peer="ipv4:10.0.0.8:5000")
    mine = detached(manager, clock, at=2, peer=hog)
    manager.open(OpenRequest(), Owner(), peer=hog)
    manager.open(OpenRequest(), Owner(), peer="ipv4:10.0.0.7:5001")  # the same address
    assert mine.released == "displaced"
    with pytest.raises(StreamAbort, match=r"this client \(10\.0\.0\.7\) holds 2 streams.*all of them on open") as no:
        manager.open(OpenRequest(), Owner(), peer=hog)
    assert no.value.code == ErrorCode.TOO_MANY_STREAMS
    assert others.released is None and displaced_count(manager) == 1


def test_a_draining_server_keeps_its_detached_streams_for_their_hand_offs():
    manager, clock = make_manager(max_streams=1)
    waiting = detached(manager, clock, at=1)
    manager.begin_drain()
    assert abort_code(lambda: manager.open(OpenRequest(), Owner())) == ErrorCode.SHUTTING_DOWN
    assert waiting.released is None
    resume(manager, waiting)  # its client collects its hand-off


def test_abandoned_streams_do_not_lock_out_a_new_client_over_grpc(start_server):
    """The whole path: streams left detached fill the server; another client's open succeeds, the displaced
    stream's resume is refused NOT_FOUND saying why, and with every stream attached the server refuses again."""
    server = start_server(max_streams=2)
    frame = make_video(seed=3, frames=1)[0]

    async def scenario():
        async with Client(server.target) as client:
            abandoned = [await client.open(StreamOptions(resume_window_s=60)) for _ in range(2)]
            for count, stream in enumerate(abandoned, 1):  # one after the other: the first is detached longest
                await stream.process(frame)
                stream.cancel()
                await asyncio.to_thread(
                    wait_until, lambda n=count: server.gauge("slotstream_streams_detached") == n, 10
                )
            newcomer = await client.open()
            await newcomer.process(frame)
            with pytest.raises(StreamError) as displaced:
                await abandoned[0].reconnect()
            second = await client.open()
            with pytest.raises(StreamError) as full:
                await client.open()
            await newcomer.close()
            await second.close()
            return displaced.value, full.value

    displaced, full = run(scenario())
    assert displaced.status == grpc.StatusCode.NOT_FOUND and displaced.code == ErrorCode.UNKNOWN_STREAM
    assert "a new stream took its place" in displaced.message
    assert full.status == grpc.StatusCode.RESOURCE_EXHAUSTED and full.code == ErrorCode.TOO_MANY_STREAMS
    assert server.metric("slotstream_streams_released_total", {"reason": "displaced"}) == 2
