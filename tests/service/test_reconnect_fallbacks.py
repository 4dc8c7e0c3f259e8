"""What ``ClientStream.reconnect()`` continues from when the resume fails (the server no longer holds the stream):
the latest state it holds, only when no answered frame came after it (it refuses a stale one rather than rewind the
stream), and a new stream when nothing reached the state yet."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from service_helpers import make_video, reference_outputs, run, wait_until
from test_stream_service import assert_matches

from service.client import Client, FrameError, FrameResult, Output, StreamError, StreamOptions
from service.errors import ErrorCode
from service.types import EncodedImage, ImageEncoding

_GARBAGE = EncodedImage(ImageEncoding.JPEG, b"\xff\xd8 garbage")  # refused: UNDECODABLE_IMAGE, not in the state


async def _freed(server) -> None:
    """Wait until ``server`` holds no stream (one without a resume window is freed when its connection drops)."""
    await asyncio.to_thread(wait_until, lambda: server.session_count() == 0)


def test_reconnect_refuses_to_continue_from_a_handoff_older_than_the_last_result(server):
    """A stream continued from a hand-off after frame 4 answers frames 5-9 without the STATE output, then its
    connection drops and the server frees it. Continuing from the hand-off would silently undo frames 5-9, so
    reconnect() says why it cannot continue exactly, naming both frames, instead."""
    clip = make_video(seed=71, frames=10)

    async def scenario():
        async with Client(server.target) as client:
            first = await client.open()
            for frame in clip[:5]:
                await first.process(frame)
            handoff = (await first.close(return_state=True))[-1].handoff
            assert handoff is not None and handoff.last_frame_index == 4
            stream = await client.open(handoff=handoff)
            for frame in clip[5:]:
                assert isinstance(await stream.process(frame), FrameResult)
            stream.cancel()
            await _freed(server)
            with pytest.raises(StreamError) as refused:
                await stream.reconnect()
            return refused.value

    refused = run(scenario())
    assert refused.status == grpc.StatusCode.FAILED_PRECONDITION, refused
    assert refused.code == ErrorCode.RESUME_POINT_UNAVAILABLE, refused
    assert "cannot be continued exactly" in refused.message and "UNKNOWN_STREAM" in refused.message, refused
    assert "the one after frame 4, while frames up to 9 were answered since" in refused.message, refused
    assert "STATE output" in refused.message, refused
    assert server.session_count() == 0, "nothing may have been opened"


def test_with_the_state_output_reconnect_continues_exactly_from_the_last_result(server):
    """With the STATE output each result refreshes the saved state, so after the server freed the stream
    reconnect() continues from the last result; a frame refused after it (not in the state) does not make that
    state stale."""
    clip = make_video(seed=72, frames=8)
    reference = reference_outputs(server.model_dir, clip)
    outputs = frozenset({Output.SLOTS, Output.SEGMENTATION, Output.STATE})

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(outputs=outputs))
            results = [await stream.process(frame) for frame in clip[:5]]
            refused = await stream.process(_GARBAGE)  # frame 5
            stream.cancel()
            await _freed(server)
            opened = await stream.reconnect()
            results += [await stream.process(frame) for frame in clip[5:]]
            await stream.close()
            return results, refused, opened

    results, refused, opened = run(scenario())
    assert isinstance(refused, FrameError) and refused.code == ErrorCode.UNDECODABLE_IMAGE, refused
    assert opened.kind.name == "HANDED_OFF" and opened.last_frame_index == 4, opened
    assert [r.frame_index for r in results] == [0, 1, 2, 3, 4, 6, 7, 8]
    assert_matches(results, reference)


def test_a_stream_the_server_drained_before_its_first_frame_starts_anew_on_another_server(start_server):
    """A shutdown before the first frame hands nothing over (there is no state yet): reconnect() opens the stream
    anew on the next server, with its id and options, and it runs exactly as an uninterrupted one."""
    draining, replacement = start_server(), start_server()
    clip = make_video(seed=73, frames=4)
    reference = reference_outputs(draining.model_dir, clip)

    async def scenario():
        async with Client(draining.target) as client, Client(replacement.target) as other:
            stream = await client.open(StreamOptions(resume_window_s=30))
            stream_id = stream.stream_id
            await asyncio.to_thread(draining.stop, 5.0)
            with pytest.raises(StreamError) as drained:
                await stream.process(clip[0])
            assert drained.value.code == ErrorCode.SHUTTING_DOWN and drained.value.handoff is None, drained.value
            opened = await stream.reconnect(other)
            results = [await stream.process(frame) for frame in clip]
            await stream.close()
            return stream_id, opened, results

    stream_id, opened, results = run(scenario())
    assert opened.kind.name == "NEW" and opened.last_frame_index is None, opened
    assert opened.stream_id == stream_id and opened.options.resume_window_s == 30, opened
    assert [r.frame_index for r in results] == [0, 1, 2, 3]
    assert_matches(results, reference)


def test_frames_sent_before_any_answer_are_sent_again_to_the_stream_started_anew(server):
    """The connection drops before any frame was answered and the server frees the stream: reconnect() opens it
    anew and re-sends the frames that send() took, whose answers then equal an uninterrupted stream's."""
    clip = make_video(seed=74, frames=3)
    reference = reference_outputs(server.model_dir, clip)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            stream.cancel()
            await _freed(server)
            for frame in clip[:2]:
                with pytest.raises(StreamError):
                    await stream.send(frame)  # counts as sent all the same
            taken = stream.unanswered
            opened = await stream.reconnect()
            resent = stream.unanswered
            results = [await stream.receive() for _ in resent]
            results.append(await stream.process(clip[2]))
            await stream.close()
            return taken, opened, resent, results

    taken, opened, resent, results = run(scenario())
    assert taken == resent == [0, 1]
    assert opened.kind.name == "NEW", opened
    assert [r.frame_index for r in results] == [0, 1, 2]
    assert_matches(results, reference)
