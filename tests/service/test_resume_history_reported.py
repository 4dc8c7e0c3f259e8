"""``StreamOpened`` tells a client how far back a resume can go (``resume_history``, the server's
``--resume-history``) and how many frames the server processes ahead of the replies gRPC took
(``max_frames_ahead``): a client written from the proto alone could not know either, and a resume after more
unread frames than the history keeps is refused. A client that keeps at most ``resume_history`` frames unread
can always resume after the last answer it read."""

from __future__ import annotations

import asyncio

import grpc
from service_helpers import make_video, raw, raw_exchange, run, wait_until

from service import wire
from service.auth import ERROR_CODE_KEY
from service.errors import ErrorCode
from service.generated import pb, pb_grpc
from service.types import FrameRequest

HISTORY = 4
CLIP = make_video(seed=33, frames=12)


def _frame(index: int):
    return wire.request_to_proto(FrameRequest(index, raw(CLIP[index % len(CLIP)])))


def _processed(server) -> int:
    manager = server.server.manager
    return int(server.on_loop(lambda: sum(s.frames_processed for s in manager.sessions.values())))


def _detached(server) -> int:
    return int(server.on_loop(server.server.manager.detached_count))


def _drop_after_reading(server, sent: int, read: int):
    """Open a stream with a resume window, send frames 1..``sent``, read the answers to the first ``read`` of them,
    wait until every frame was processed and drop the connection; returns the ``StreamOpened``."""

    async def scenario():
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = pb_grpc.PerceptionStub(channel).Stream()
            await call.write(pb.StreamRequest(open=pb.OpenStream(options=pb.StreamOptions(resume_window_s=30))))
            opened = (await call.read()).opened
            for index in range(1, sent + 1):
                await call.write(_frame(index))
            for index in range(1, read + 1):
                answer = await call.read()
                assert answer.result.frame_index == index, answer
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, wait_until, lambda: _processed(server) == sent)
            call.cancel()
        await asyncio.get_running_loop().run_in_executor(None, wait_until, lambda: _detached(server) == 1)
        return opened

    return run(scenario())


def _resume(server, opened, after: int):
    resume = pb.ResumeStream(resume_token=opened.resume_token, last_frame_index=after)
    request = pb.StreamRequest(open=pb.OpenStream(stream_id=opened.stream_id, resume=resume))
    close = pb.StreamRequest(close=pb.CloseStream())  # a resumed stream ends there, freeing its state
    return run(raw_exchange(server.target, request, close, answer_first=True))


def test_stream_opened_reports_the_resume_history_and_the_frames_processed_ahead(start_server):
    server = start_server(resume_history=HISTORY)
    responses, error = run(raw_exchange(server.target, pb.StreamRequest(open=pb.OpenStream())))
    assert error is None, error
    opened = responses[0].opened
    assert opened.resume_history == HISTORY
    # the reply budget is ample here: the window is the resume history (never more, see the proto)
    assert opened.max_frames_ahead == HISTORY
    back = wire.response_from_proto(responses[0])
    assert (back.resume_history, back.max_frames_ahead) == (HISTORY, HISTORY)


def test_a_resume_after_at_most_resume_history_unread_frames_succeeds_and_one_more_is_refused(start_server):
    """The ResumeStream comment's rule, at its boundary: frames 1-6 sent, 1-2 read (4 unread) resumes after 2;
    frames 1-7 sent, 1-2 read (5 unread) is refused with RESUME_POINT_UNAVAILABLE, which names the flag."""
    server = start_server(resume_history=HISTORY)
    opened = _drop_after_reading(server, sent=2 + HISTORY, read=2)
    assert opened.resume_history == HISTORY
    responses, error = _resume(server, opened, after=2)
    assert error is None, error
    resumed = responses[0].opened
    assert resumed.kind == pb.OPEN_KIND_RESUMED and resumed.last_frame_index == 2
    assert resumed.resume_history == HISTORY
    assert [r.WhichOneof("kind") for r in responses[1:]] == ["closed"]

    opened = _drop_after_reading(server, sent=2 + HISTORY + 1, read=2)
    _, error = _resume(server, opened, after=2)
    assert error is not None and error.code() == grpc.StatusCode.FAILED_PRECONDITION
    trailer = dict(error.trailing_metadata() or ())
    assert trailer[ERROR_CODE_KEY] == ErrorCode.RESUME_POINT_UNAVAILABLE.wire_name
    assert "--resume-history" in error.details()
