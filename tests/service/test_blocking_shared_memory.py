"""``stream_frames(..., shared_memory=True)`` sends a loop's frames through POSIX shared memory: the answers equal
those of the same frames sent as bytes, also through a reconnect; a frame whose ring slot still holds an unanswered
frame goes as bytes; a server that does not read shared memory is refused up front; the segment is removed."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from service_helpers import make_video, reference_outputs, slow_factory
from tcp_proxy import TakeOver, after_frame

from service.client import FrameResult, Output, StreamOptions, stream_frames
from service.client.shared_frames import RingSender, SharedFrameRing
from service.shared_memory import shared_memory_supported
from service.types import EncodedImage

pytestmark = pytest.mark.skipif(
    not shared_memory_supported(), reason="POSIX shared memory in /dev/shm is Linux's; this host has none"
)

OPTIONS = StreamOptions(outputs=frozenset({Output.SLOTS, Output.SEGMENTATION}))


@pytest.fixture
def ring_puts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The slot of every frame put in a ring, in order (the real ring, counted)."""
    puts: list[int] = []
    put = SharedFrameRing.put

    def counted(ring: SharedFrameRing, frame: np.ndarray) -> EncodedImage:
        puts.append(ring.next_slot)
        return put(ring, frame)

    monkeypatch.setattr(SharedFrameRing, "put", counted)
    return puts


def _segments() -> set[str]:
    return set(os.listdir("/dev/shm"))


def _assert_reference(answers: list[object], clip: list[np.ndarray], server) -> None:
    reference = reference_outputs(server.model_dir, clip)
    assert [answer.frame_index for answer in answers] == list(range(len(clip)))  # type: ignore[attr-defined]
    for answer, (slots, segmentation) in zip(answers, reference, strict=True):
        assert isinstance(answer, FrameResult) and answer.slots is not None, answer
        np.testing.assert_allclose(answer.slots, slots, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(answer.segmentation, segmentation)


def test_a_loops_frames_go_through_shared_memory_and_give_the_answers_of_bytes(start_server, ring_puts):
    server = start_server(shared_memory=True)
    clip = make_video(seed=81, frames=8)
    before = _segments()
    answers = list(stream_frames(server.target, clip, OPTIONS, shared_memory=True))
    _assert_reference(answers, clip, server)
    assert ring_puts == [0, 1, 2] * 2 + [0, 1], "every frame through the ring of window + 1 slots, in turn"
    assert _segments() <= before, "the loop removes its segment"


def test_through_a_dropped_connection_the_re_sent_frames_are_read_from_their_slots(start_server, proxy_to, ring_puts):
    factory, _ = slow_factory(delay_s=0.02)
    server = start_server(shared_memory=True, engine_factory=factory)
    proxy = proxy_to(server.target)
    clip = make_video(seed=82, frames=30)
    watcher = after_frame(server, 10, proxy.drop)
    answers = list(stream_frames(proxy.target, clip, OPTIONS, shared_memory=True, reconnect=3))
    watcher.join(30)
    assert proxy.drops == 1
    _assert_reference(answers, clip, server)
    assert len(ring_puts) == len(clip), "no frame fell back to bytes"


def test_a_server_that_does_not_read_shared_memory_is_refused_up_front(server):
    clip = make_video(seed=83, frames=2)
    with pytest.raises(ValueError, match=r"shared_memory=True: the server does not read shared memory for this"):
        list(stream_frames(server.target, clip, shared_memory=True))
    with pytest.raises(ValueError, match=r"shared_memory sends raw frames: leave jpeg_quality out"):
        list(stream_frames(server.target, clip, shared_memory=True, jpeg_quality=80))
    assert server.session_count() == 0


def test_a_slot_of_an_unanswered_frame_is_never_written_again_the_frame_goes_as_bytes():
    frame = np.zeros((4, 6, 3), np.uint8)
    sender = RingSender(slots=2)
    try:
        first, second = sender.image(frame, 0), sender.image(frame, 1)
        assert isinstance(first, EncodedImage) and isinstance(second, EncodedImage)
        assert sender.image(frame, 2) is frame, "slot 0 holds frame 0, unanswered"
        sender.settled(0)
        third = sender.image(frame, 3)
        assert isinstance(third, EncodedImage) and third.shared_memory == first.shared_memory
        assert sender.image(np.zeros((6, 4, 3), np.uint8), 4).shape == (6, 4, 3), "another shape goes as it is"
        assert sender.image(b"\xff\xd8jpeg", 5) == b"\xff\xd8jpeg"
    finally:
        sender.close()


@pytest.mark.parametrize("end", ["drained", "lost"])
def test_after_a_reconnect_to_a_server_that_does_not_read_shared_memory_the_frames_go_as_bytes(
    start_server, proxy_to, ring_puts, caplog, end
):
    """The shared-memory server drains (a new connection) or is lost without a shutdown (the same connection, as a
    crash and restart behind one address), and one without shared memory answers at the address: the stream
    continues there, the frames re-sent from their slots go with their pixels in the request and the later frames
    as bytes, so the answers are an uninterrupted stream's."""
    factory, _ = slow_factory(delay_s=0.02)
    first, replacement = start_server(shared_memory=True, engine_factory=factory), start_server()
    proxy = proxy_to(first.target)
    clip = make_video(seed=84, frames=30)
    if end == "drained":
        take_over = TakeOver(proxy, first, replacement)
    else:

        def cut_off() -> None:
            proxy.upstream = replacement.target
            proxy.drop()

        watcher = after_frame(first, 10, cut_off)
    with caplog.at_level(logging.WARNING, logger="service.client"):
        answers = list(stream_frames(proxy.target, clip, OPTIONS, shared_memory=True, reconnect=6))
    if end == "drained":
        take_over.join()
    else:
        watcher.join(30)
    assert "does not read shared memory for this client: later frames go as bytes" in caplog.text, caplog.text
    _assert_reference(answers, clip, first)
    assert 10 < len(ring_puts) < len(clip), "the frames before the take-over went through the ring, not those after"
