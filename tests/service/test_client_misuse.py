"""The client library used wrongly or unluckily: bad ``send()`` arguments, cancelled waits, concurrent
``process()`` calls, reuse after close, TLS files given as strings or not PEM, frames that are not images. Each
gets an error that says what was wrong, and the stream stays usable where it can."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from service_helpers import make_video, run, slow_factory

from service.client import (
    Client,
    ErrorCode,
    FrameResult,
    StreamError,
    StreamOptions,
    TlsFiles,
    encode_image,
    stream_frames,
)
from service.client.__main__ import main


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"frame_index": 1.0}, TypeError, "frame_index must be an integer, got float"),
        ({"frame_index": 2**64}, ValueError, "frame_index must fit in a signed 64-bit integer"),
        ({"capture_time_ns": 1.5e18}, TypeError, "capture_time_ns must be an integer, got float"),
        ({"capture_time_ns": "now"}, TypeError, "capture_time_ns must be an integer, got str"),
        ({"capture_time_ns": -(2**63) - 1}, ValueError, "capture_time_ns must fit in a signed 64-bit integer"),
        ({"camera_frame_id": 7}, TypeError, "camera_frame_id must be a str, got int"),
        ({"camera_frame_id": "cam\udcff"}, ValueError, "camera_frame_id must be text UTF-8 can encode"),
        ({"jpeg_quality": 90.5}, TypeError, "jpeg_quality must be an integer"),
    ],
)
def test_a_refused_send_argument_leaves_the_stream_as_it_was(server, kwargs, error, message):
    """Checked before anything is recorded: no phantom frame for reconnect() to re-send, no moved index."""
    clip = make_video(seed=101, frames=2)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            await stream.process(clip[0])
            with pytest.raises(error, match=message):
                await stream.send(clip[1], **kwargs)
            with pytest.raises(error, match=message):
                await stream.process(clip[1], **kwargs)
            state = (stream.next_frame_index, stream.unanswered)
            following = await stream.process(clip[1])
            await stream.close()
            return state, following

    (next_index, unanswered), following = run(scenario())
    assert next_index == 1 and unanswered == []
    assert isinstance(following, FrameResult) and following.frame_index == 1


def test_an_explicit_index_of_a_frame_still_in_flight_is_refused(server):
    """Two frames under one index would leave one entry for reconnect() to re-send, possibly the image the server
    refused; a stale index whose frame was answered still goes to the server, which answers it with an error."""
    clip = make_video(seed=104, frames=4)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            await stream.send(clip[0], frame_index=1)
            await stream.send(clip[1], frame_index=2)
            with pytest.raises(ValueError, match=r"frame_index 2 is still in flight .* the next free one is 3"):
                await stream.send(clip[2], frame_index=2)
            pending = stream.unanswered
            answers = [await stream.receive(), await stream.receive()]
            stale = await stream.process(clip[3], frame_index=1)  # answered: the server says why
            await stream.close()
            return pending, answers, stale

    pending, answers, stale = run(scenario())
    assert pending == [1, 2]
    assert [answer.frame_index for answer in answers] == [1, 2]
    assert all(isinstance(answer, FrameResult) for answer in answers)
    assert stale.code == ErrorCode.FRAME_INDEX_NOT_INCREASING


def test_a_process_cut_short_by_a_timeout_leaves_the_stream_usable(start_server):
    """A ``wait_for`` timeout used to cancel the whole gRPC call; now the late answer is skipped."""
    factory, _ = slow_factory(delay_s=0.3)
    server = start_server(engine_factory=factory)
    clip = make_video(seed=102, frames=3)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(stream.process(clip[0]), 0.05)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(stream.receive(), 0.01)  # nothing else is due: a bare wait, cut short
            unanswered = stream.unanswered
            following = await stream.process(clip[1])
            last = await stream.process(clip[2])
            remaining = await stream.close()
            return unanswered, following, last, remaining

    unanswered, following, last, remaining = run(scenario())
    assert unanswered == []  # frame 0's answer is skipped, not waited for
    assert isinstance(following, FrameResult) and following.frame_index == 1
    assert isinstance(last, FrameResult) and last.frame_index == 2 and len(remaining) == 1


def test_concurrent_process_calls_are_refused_clearly(start_server):
    factory, _ = slow_factory(delay_s=0.1)
    server = start_server(engine_factory=factory)
    clip = make_video(seed=103, frames=3)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            outcomes = await asyncio.gather(stream.process(clip[0]), stream.process(clip[1]), return_exceptions=True)
            following = await stream.process(clip[2])
            await stream.close()
            return outcomes, following

    (first, second), following = run(scenario())
    assert isinstance(first, FrameResult) and first.frame_index == 0
    assert isinstance(second, StreamError) and "process() is already running on this stream" in second.message
    assert isinstance(following, FrameResult) and following.frame_index == 1


def test_process_after_reconnect_waits_for_the_re_sent_frames_instead_of_going_off_by_one(server):
    """reconnect() re-sends a frame that was never answered; process() used to take that frame's answer for its
    own and stay one answer behind for good."""
    clip = make_video(seed=104, frames=4)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=10))
            await stream.process(clip[0])
            await stream.send(clip[1])
            stream.cancel()
            await stream.reconnect()
            with pytest.raises(StreamError) as refused:
                await stream.process(clip[2])
            resent = await stream.receive()
            answers = [await stream.process(frame) for frame in clip[2:]]
            await stream.close()
            return refused.value, resent, answers

    refused, resent, answers = run(scenario())
    assert refused.status == grpc.StatusCode.FAILED_PRECONDITION
    assert "frame 1 is still unanswered" in refused.message and "nothing was sent" in refused.message
    assert resent.frame_index == 1
    assert [a.frame_index for a in answers] == [2, 3] and all(isinstance(a, FrameResult) for a in answers)


def test_a_closed_stream_can_be_closed_again_and_says_it_is_closed(server):
    clip = make_video(seed=105, frames=2)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            await stream.process(clip[0])
            first = await stream.close()
            second = await stream.close()
            await stream.close_writing()  # the close was sent already: nothing to do
            errors = []
            for operation in (stream.receive(), stream.send(clip[1]), stream.process(clip[1])):
                with pytest.raises(StreamError) as error:
                    await operation
                errors.append(error.value)
            return first, second, errors

    first, second, errors = run(scenario())
    assert second == first[-1:] and len(first) == 1
    for error in errors:
        assert error.status == grpc.StatusCode.FAILED_PRECONDITION, error
        assert "is closed (close() ended it; reason CLIENT_CLOSED)" in error.message, error


def test_a_closed_client_says_so(server):
    clip = make_video(seed=106, frames=1)

    async def scenario():
        client = Client(server.target)
        stream = await client.open()
        await client.close()
        await client.close()  # again: nothing to do
        errors = []
        for operation in (client.open(), client.describe(), client.wait_ready(1), stream.process(clip[0])):
            with pytest.raises(StreamError) as error:
                await operation
            errors.append(error.value)
        return errors

    for error in run(scenario()):
        assert "is closed (Client.close() or the end of its `async with`)" in error.message, error
        assert "make a new Client" in error.message, error


def test_tls_files_take_str_paths(start_server, certificates):
    d = certificates
    server = start_server(tls_cert=d / "server.pem", tls_key=d / "server.key")
    tls = TlsFiles(root_ca=str(d / "ca.pem"))
    assert tls.root_ca == d / "ca.pem"

    async def describe():
        async with Client(server.target, tls=tls) as client:
            return await client.describe()

    assert run(describe()).name == "tiny"


def test_tls_files_that_are_not_pem_are_named(certificates, tmp_path, capsys):
    der, missing = tmp_path / "ca.der", tmp_path / "missing.pem"
    der.write_bytes(b"0\x82\x03\x1d0\x82\x02\x05\xa0\x03\x02\x01\x02")
    cases = [
        (TlsFiles(root_ca=der), ValueError, rf"TlsFiles.root_ca \(--tls-ca\) {der}: the CA certificate is not PEM"),
        (TlsFiles(root_ca=missing), OSError, rf"TlsFiles.root_ca \(--tls-ca\) {missing}: cannot read it"),
        (
            TlsFiles(cert=certificates / "client.pem", key=certificates / "client.pem"),
            ValueError,
            r"TlsFiles.key \(--tls-key\) .*client\.pem: not a PEM private key",
        ),
        (
            TlsFiles(cert=certificates / "client.key", key=certificates / "client.key"),
            ValueError,
            r"TlsFiles.cert \(--tls-cert\) .*client\.key: the client certificate is not PEM",
        ),
    ]

    async def make(tls: TlsFiles) -> None:
        Client("127.0.0.1:1", tls=tls)

    for tls, error, message in cases:
        with pytest.raises(error, match=message):
            run(make(tls))
    assert main(["describe", "--target", "127.0.0.1:1", "--tls-ca", str(der)]) == 2
    assert f"--tls-ca) {der}: the CA certificate is not PEM" in capsys.readouterr().err


def test_frame_format_errors_name_the_frame_and_empty_frames_are_refused(server):
    clip = make_video(seed=107, frames=2)
    with pytest.raises(ValueError, match=r"^frame 2: frames must be uint8 \[H, W, 3\] RGB arrays, got uint8 \(4, 4\)"):
        list(stream_frames(server.target, iter([*clip, np.zeros((4, 4), np.uint8)])))
    with pytest.raises(ValueError, match=r"^frame 1: a frame needs at least one pixel, got an empty 0x5 array"):
        list(stream_frames(server.target, iter([clip[0], np.zeros((0, 5, 3), np.uint8)])))
    with pytest.raises(ValueError, match="at least one pixel"):
        encode_image(np.zeros((7, 0, 3), np.uint8))


def test_a_send_cut_short_still_sends_its_frame(start_server):
    """Cancelling a task in send() no longer cancels the call: the frame goes out and is answered in order."""
    factory, _ = slow_factory(delay_s=0.05)
    server = start_server(engine_factory=factory)
    clip = make_video(seed=108, frames=3)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            sending = asyncio.ensure_future(stream.send(clip[0]))
            await asyncio.sleep(0)
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
            await stream.send(clip[1])
            answers = [await stream.receive(), await stream.receive()]
            await stream.close()
            return answers

    answers = run(scenario())
    assert [a.frame_index for a in answers] == [0, 1] and all(isinstance(a, FrameResult) for a in answers)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--token-file", "{tmp}/missing-token"], "error: --token-file {tmp}/missing-token: cannot read it: No such"),
        (["--tls-ca", "{tmp}/missing-ca.pem"], "(--tls-ca) {tmp}/missing-ca.pem: cannot read it: No such"),
    ],
)
def test_an_unreadable_connection_file_is_named_by_its_flag(tmp_path, capsys, flags, message):
    argv = ["describe", "--target", "127.0.0.1:1", *(flag.format(tmp=tmp_path) for flag in flags)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and "[Errno" not in err, err


@pytest.mark.parametrize("target", ["127.0.0.1", "localhost", "my-host.example"])
def test_a_target_without_a_port_is_refused_before_connecting(capsys, target):
    assert main(["describe", "--target", target]) == 2
    assert f"error: --target {target}: give the server's port too, as in {target}:50051" in capsys.readouterr().err


def test_a_tls_target_without_a_port_is_left_to_grpc_default_443(tmp_path, capsys):
    """A TLS endpoint behind an ingress listens on 443, gRPC's default: no port is needed there."""
    assert main(["describe", "--target", "localhost", "--tls-ca", str(tmp_path / "missing-ca.pem")]) == 2
    err = capsys.readouterr().err
    assert "give the server's port" not in err and "missing-ca.pem: cannot read it" in err, err
