"""A bearer token removed from the token file is taken away from the ``Stream`` calls it authenticated: they end with
UNAUTHENTICATED, saying the token was revoked, and their streams wait detached for a resume with a valid token."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading

import grpc
import pytest
from service_helpers import make_video, raw, run, slow_factory, wait_until

from service import wire
from service.client import Client, StreamError
from service.client.__main__ import main
from service.errors import ErrorCode
from service.generated import pb_grpc
from service.types import (
    CLOSE_REASONS_KEY,
    CloseReason,
    FrameRequest,
    FrameResult,
    OpenKind,
    OpenRequest,
    StreamOptions,
)

OLD = "old-token-" + "A" * 24
NEW = "new-token-" + "B" * 24


def _rewrite(path, text: str) -> None:
    """Replace the file as a Secret update does: a new file renamed over the old (a new inode)."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    fresh.replace(path)


def _serving_tokens(start_server, tmp_path, *tokens: str):
    """A server taking ``tokens`` from a token file of its own; returns it and the file."""
    path = tmp_path / "tokens"
    path.write_text("".join(f"{token}\n" for token in tokens))
    path.chmod(0o600)
    return start_server(auth_token_file=path), path


def test_a_revoked_token_ends_its_open_streams_which_resume_with_a_valid_token(start_server, tmp_path, caplog):
    server, path = _serving_tokens(start_server, tmp_path, OLD, NEW)
    manager = server.server.manager
    assert manager is not None
    clip = make_video(seed=5, frames=4)
    caplog.set_level(logging.INFO)

    def detached() -> int:
        return int(server.on_loop(manager.detached_count))

    async def scenario():
        async with Client(server.target, token=OLD) as old, Client(server.target, token=NEW) as new:
            resumable = await old.open(StreamOptions(resume_window_s=30))
            windowless = await old.open()
            kept = await new.open()
            for stream in (resumable, windowless, kept):
                assert isinstance(await stream.process(clip[0]), FrameResult)
            refused_before = server.metric("slotstream_calls_refused_total", {"code": "unauthenticated"})
            _rewrite(path, f"{NEW}\n")  # the old token is revoked; no new call arrives to look at the file
            await asyncio.to_thread(wait_until, lambda: detached() == 1)
            assert server.session_count() == 2, "the stream without a resume window is freed; the other waits"
            ended = []
            for stream in (resumable, windowless):
                with pytest.raises(StreamError) as raised:
                    await stream.process(clip[1])
                ended.append(raised.value)
            refused = server.metric("slotstream_calls_refused_total", {"code": "unauthenticated"}) - refused_before
            kept_answer = await kept.process(clip[1])  # a call with a token still in the file goes on
            old.use_token(NEW)
            reopened = await resumable.reconnect()
            resumed_answer = await resumable.process(clip[1])
            await kept.close()
            await resumable.close()
            return ended, refused, kept_answer, reopened, resumed_answer

    ended, refused, kept_answer, reopened, resumed_answer = run(scenario())
    for error in ended:
        assert error.status == grpc.StatusCode.UNAUTHENTICATED and error.code == ErrorCode.UNAUTHENTICATED, error
        assert "bearer token this call was authenticated with was revoked" in error.message, error
        assert OLD not in error.message
    assert "is detached: resume it on a new call within its resume window (30 s)" in ended[0].message, ended[0]
    assert "had no resume window, so its state is freed" in ended[1].message, ended[1]
    assert refused == 2
    assert isinstance(kept_answer, FrameResult)
    assert reopened.kind == OpenKind.RESUMED and reopened.last_frame_index == 0
    assert isinstance(resumed_answer, FrameResult) and resumed_answer.frame_index == 1
    lines = [r.getMessage() for r in caplog.records if "whose bearer token was revoked" in r.getMessage()]
    assert lines == ["ended 2 stream call(s) whose bearer token was revoked (removed from the token file)"], lines
    assert not [r for r in caplog.records if OLD in r.getMessage() or OLD in str(r.__dict__)]


def test_a_reload_that_keeps_a_calls_token_leaves_the_call_alone(start_server, tmp_path):
    """Rotation step 1 (a second token added) and a rewrite of the same tokens end no call."""
    server, path = _serving_tokens(start_server, tmp_path, OLD)
    clip = make_video(seed=6, frames=3)
    token_file = server.server._token_file
    assert token_file is not None

    def reloaded(count: int) -> bool:
        return bool(server.on_loop(lambda: token_file.reloads) >= count)

    async def scenario():
        async with Client(server.target, token=OLD) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            answers = [await stream.process(clip[0])]
            for reloads, text in enumerate((f"{OLD}\n{NEW}\n", f"  {OLD}\n"), start=1):
                _rewrite(path, text)
                await asyncio.to_thread(wait_until, functools.partial(reloaded, reloads))
                answers.append(await stream.process(clip[len(answers)]))
            await stream.close()
            return answers

    answers = run(scenario())
    assert [type(answer) for answer in answers] == [FrameResult] * 3
    assert server.metric("slotstream_calls_refused_total", {"code": "unauthenticated"}) == 0


def test_a_stream_command_with_a_token_file_and_reconnect_outlives_a_rotation(start_server, tmp_path, capsys):
    """The command line's ``--reconnect`` continues a stream whose token a rotation revoked, with the token its
    ``--token-file`` holds by then: every frame is answered, and the run ends well."""

    server_tokens, client_tokens = tmp_path / "tokens", tmp_path / "client-token"
    server_tokens.write_text(OLD + "\n")
    client_tokens.write_text(OLD + "\n")
    client_tokens.chmod(0o600)
    factory, _ = slow_factory(delay_s=0.01)
    server = start_server(engine_factory=factory, auth_token_file=server_tokens)

    def rotate_once_streaming() -> None:
        wait_until(lambda: server.session_count() > 0, timeout=30)
        _rewrite(client_tokens, NEW + "\n")  # the client's copy first, then the server drops the old token
        _rewrite(server_tokens, NEW + "\n")

    rotating = threading.Thread(target=rotate_once_streaming, daemon=True)
    rotating.start()
    arguments = ["--target", server.target, "--token-file", str(client_tokens), "--reconnect", "5"]
    code = main(["stream", "synthetic:300", *arguments])
    rotating.join(30)
    error = capsys.readouterr().err
    assert code == 0, error
    assert "revoked" in error and "continued the stream (resumed)" in error, error
    assert "300 frames from 300 synthetic frames: 300 results" in error, error


def test_a_client_sending_without_pause_learns_of_the_revocation_at_once(start_server, tmp_path):
    """The call's end is said in the call (``StreamClosed``, reason ``TOKEN_REVOKED``), so a client that keeps
    sending (a camera) stops and half-closes as it reads it, and gets the status at once: not after the 30 s the
    server otherwise waits for a client that never pauses, its frames dropped unanswered meanwhile."""
    server, path = _serving_tokens(start_server, tmp_path, OLD, NEW)
    clip = make_video(seed=7, frames=8)

    async def scenario():
        async with Client(server.target, token=OLD) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            assert isinstance(await stream.process(clip[0]), FrameResult)

            async def camera() -> None:
                index = 1
                while True:
                    await stream.send(clip[index % len(clip)])
                    index += 1
                    await asyncio.sleep(0.02)

            sending = asyncio.create_task(camera())
            revoked_at = asyncio.get_running_loop().time()
            _rewrite(path, f"{NEW}\n")
            try:
                with pytest.raises(StreamError) as ended:
                    while True:
                        await stream.receive()
            finally:
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError, StreamError):
                    await sending
            return ended.value, asyncio.get_running_loop().time() - revoked_at

    error, took_s = run(scenario())
    assert error.status == grpc.StatusCode.UNAUTHENTICATED and error.code == ErrorCode.UNAUTHENTICATED, error
    assert "bearer token this call was authenticated with was revoked" in error.message, error
    assert error.closed is not None and error.closed.reason.name == "TOKEN_REVOKED", error.closed
    assert took_s < 10, f"the end came {took_s:.1f} s after the revocation"


def test_a_call_whose_handler_starts_after_its_token_was_revoked_is_refused(start_server, tmp_path):
    """The window between the check of a call's headers and its handler: a reload that revokes the token there
    (shown to the handler alone here, with the file unchanged, so the headers' check still lets the old token in)
    finds no call to end, so the handler refuses the call itself, with the revocation's status."""
    server, _ = _serving_tokens(start_server, tmp_path, OLD, NEW)
    servicer = server.server._servicer
    servicer.token_source = lambda: (NEW.encode(),)

    async def scenario():
        async with Client(server.target, token=OLD) as old, Client(server.target, token=NEW) as new:
            with pytest.raises(StreamError) as refused:
                await old.open()
            kept = await new.open()
            await kept.close()
            return refused.value

    error = run(scenario())
    assert error.status == grpc.StatusCode.UNAUTHENTICATED and error.code == ErrorCode.UNAUTHENTICATED, error
    assert "bearer token this call was authenticated with was revoked" in error.message, error
    assert server.metric("slotstream_calls_refused_total", {"code": "unauthenticated"}) == 1


def test_a_token_added_to_the_file_is_taken_as_soon_as_it_is_read(start_server, tmp_path):
    """Rotation step 1 after an earlier rotation: the new token is taken by every check from the reload that reads
    it on, not refused as revoked until the file settles."""
    server, path = _serving_tokens(start_server, tmp_path, OLD)
    token_file = server.server._token_file
    third = "third-token-" + "C" * 24
    clip = make_video(seed=8, frames=2)

    async def scenario():
        async with Client(server.target, token=OLD) as old, Client(server.target, token=third) as newest:
            stream = await old.open()
            await stream.process(clip[0])
            _rewrite(path, f"{NEW}\n")  # an earlier rotation: OLD revoked, its call ended once the file settled
            with pytest.raises(StreamError):
                for _ in range(100):
                    await stream.process(clip[1])
                    await asyncio.sleep(0.1)
            _rewrite(path, f"{NEW}\n{third}\n")
            await asyncio.to_thread(wait_until, lambda: third.encode() in server.on_loop(token_file.current), 5.0)
            opened = await newest.open()  # at once: before the file settles
            await opened.close()

    run(scenario())


def test_a_client_that_does_not_name_the_close_reasons_it_knows_gets_no_token_revoked_close(start_server, tmp_path):
    """A client older than ``CLOSE_REASON_TOKEN_REVOKED`` (no ``slotstream-close-reasons`` metadata) would take that
    close for another (``UNSPECIFIED``): its call ends with the status alone, as it did before the reason existed."""
    server, path = _serving_tokens(start_server, tmp_path, OLD, NEW)
    clip = make_video(seed=9, frames=1)

    async def scenario():
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = pb_grpc.PerceptionStub(channel).Stream(metadata=(("authorization", f"Bearer {OLD}"),))
            await call.write(wire.request_to_proto(OpenRequest(options=StreamOptions(resume_window_s=30))))
            await call.write(wire.request_to_proto(FrameRequest(0, raw(clip[0]))))
            kinds = [(await call.read()).WhichOneof("kind") for _ in range(2)]
            _rewrite(path, f"{NEW}\n")
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                while True:
                    kinds.append((await call.read()).WhichOneof("kind"))
            return kinds, ended.value

    kinds, ended = run(scenario())
    assert kinds == ["opened", "result"], kinds
    assert ended.code() == grpc.StatusCode.UNAUTHENTICATED, ended


def test_a_revocation_after_the_drains_close_sends_no_second_close(start_server, tmp_path):
    """A ``StreamClosed`` is a call's last message: a token revoked while the drain waits for a client that read
    the drain's close and keeps sending ends the call with its status alone."""
    server, path = _serving_tokens(start_server, tmp_path, OLD, NEW)
    clip = make_video(seed=10, frames=1)
    metadata = (("authorization", f"Bearer {OLD}"), (CLOSE_REASONS_KEY, str(max(CloseReason))))

    async def scenario():
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = pb_grpc.PerceptionStub(channel).Stream(metadata=metadata)
            await call.write(wire.request_to_proto(OpenRequest(options=StreamOptions(resume_window_s=30))))
            await call.write(wire.request_to_proto(FrameRequest(0, raw(clip[0]))))
            kinds = [(await call.read()).WhichOneof("kind") for _ in range(2)]
            stopping = threading.Thread(target=server.stop, args=(20.0,), daemon=True)
            stopping.start()
            kinds.append((await call.read()).WhichOneof("kind"))  # the drain's close

            camera_on = asyncio.Event()
            camera_on.set()

            async def camera() -> None:  # goes on sending, which keeps the call open
                index = 1
                while camera_on.is_set():
                    await call.write(wire.request_to_proto(FrameRequest(index, raw(clip[0]))))
                    index += 1
                    await asyncio.sleep(0.05)

            sending = asyncio.create_task(camera())
            _rewrite(path, f"{NEW}\n")
            token_file = server.server._token_file
            await asyncio.to_thread(wait_until, lambda: token_file.reloads >= 1, 5.0)
            await asyncio.sleep(1.5)  # the file settles: the revocation reaches the call
            camera_on.clear()  # stops between writes: cancelling a write would cancel the call itself
            with contextlib.suppress(grpc.aio.AioRpcError):
                await sending
            await call.done_writing()
            with contextlib.suppress(grpc.aio.AioRpcError):
                while True:
                    kinds.append((await call.read()).WhichOneof("kind"))
            await asyncio.to_thread(stopping.join, 30)
            return kinds

    kinds = run(scenario())
    assert kinds == ["opened", "result", "closed"], kinds
