"""``ClientStream`` used in ways a caller can get wrong: every mistake gives a ``StreamError`` or ``ValueError`` that
says what happened, and the stream's bookkeeping stays right."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from service_helpers import make_video, run

from service.client import Client, FrameResult, StreamError, StreamOptions, TlsFiles, encode_image, stream_frames
from service.client.__main__ import main
from service.errors import ErrorCode
from service.types import ImageEncoding


def test_sending_on_a_stream_the_server_ended_is_a_stream_error(server):
    """A resume on another connection takes the stream over: the old one's sends and closes raise StreamError."""
    clip = make_video(seed=71, frames=2)

    async def scenario():
        async with Client(server.target) as client, Client(server.target) as other:
            stream = await client.open(StreamOptions(resume_window_s=10))
            await stream.process(clip[0])
            await other.resume(stream.stream_id, stream.opened.resume_token, 0)
            deadline = time.monotonic() + 10
            while True:  # sends succeed until the takeover's end of the old call reaches this client
                try:
                    await stream.send(clip[1])
                except StreamError as error:
                    sending = error
                    break
                assert time.monotonic() < deadline, "the old call never ended"
                await asyncio.sleep(0.02)
            with pytest.raises(StreamError):
                await stream.close()
            return sending

    error = run(scenario())
    assert error.code == ErrorCode.TAKEN_OVER, error


def test_an_explicit_lower_frame_index_does_not_move_the_next_default_index_back(server):
    clip = make_video(seed=72, frames=4)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            await stream.process(clip[0], frame_index=5)
            stale = await stream.process(clip[1], frame_index=3)  # answered FRAME_INDEX_NOT_INCREASING
            following = await stream.process(clip[2])  # gets index 6, not 4
            await stream.close()
            return stale, following

    stale, following = run(scenario())
    assert stale.code == ErrorCode.FRAME_INDEX_NOT_INCREASING
    assert isinstance(following, FrameResult) and following.frame_index == 6


def test_process_with_a_frame_outstanding_says_so_briefly_and_sends_nothing(server):
    """Refused before sending: the earlier frame's answer is not consumed, so the stream does not go off by one."""
    clip = make_video(seed=73, frames=3)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            await stream.send(clip[0])
            with pytest.raises(StreamError) as error:
                await stream.process(clip[1])
            earlier = await stream.receive()
            following = await stream.process(clip[2])
            await stream.close()
            return str(error.value), earlier, following

    message, earlier, following = run(scenario())
    assert "needs every earlier frame answered first, and frame 0 is still unanswered" in message, message
    assert "nothing was sent" in message and len(message) < 400, message
    assert earlier.frame_index == 0 and isinstance(following, FrameResult) and following.frame_index == 1


@pytest.mark.parametrize(("cert", "key", "missing"), [("c.pem", None, "key"), (None, "c.key", "cert")])
def test_a_client_certificate_and_its_key_come_together(cert, key, missing):
    """gRPC aborts the whole process on a certificate without its key; the client refuses it first."""
    with pytest.raises(ValueError, match=f"needs its {missing} too"):
        TlsFiles(cert=Path(cert) if cert else None, key=Path(key) if key else None)


def test_the_cli_refuses_a_lone_tls_key_instead_of_connecting_in_plaintext(capsys):
    assert main(["describe", "--target", "127.0.0.1:1", "--tls-key", "c.key"]) == 2
    assert "needs its cert too" in capsys.readouterr().err


def test_encode_image_takes_byte_buffers_and_names_what_it_cannot_take():
    raw = encode_image(np.zeros((4, 4, 3), np.uint8))
    assert raw.encoding == ImageEncoding.RAW_RGB8
    jpeg = encode_image(np.zeros((8, 8, 3), np.uint8), jpeg_quality=90)
    for buffer in (bytearray(jpeg.data), memoryview(jpeg.data)):
        assert encode_image(buffer).encoding == ImageEncoding.JPEG
    with pytest.raises(ValueError, match="got NoneType"):
        encode_image(None)  # type: ignore[arg-type]
    for quality in (0, 100):
        with pytest.raises(ValueError, match=f"jpeg_quality must be between 1 and 95, got {quality}"):
            encode_image(np.zeros((8, 8, 3), np.uint8), jpeg_quality=quality)


def test_the_stream_command_refuses_a_jpeg_quality_before_connecting(capsys):
    assert main(["stream", "synthetic:2", "--target", "127.0.0.1:1", "--jpeg-quality", "100"]) == 2
    assert "--jpeg-quality must be between 1 and 95, got 100" in capsys.readouterr().err


def test_a_none_frame_is_refused_not_taken_for_the_end_of_the_frames(server):
    clip = make_video(seed=74, frames=2)
    with pytest.raises(ValueError, match="got NoneType"):
        list(stream_frames(server.target, iter([clip[0], None, clip[1]])))


@pytest.mark.parametrize(("flags", "name"), [(["--frames", "0"], "zero.gif"), (["--size", "1"], "dot.mp4")])
def test_synth_refuses_an_empty_clip_or_frames_no_encoder_takes(tmp_path, capsys, flags, name):
    out = tmp_path / name
    assert main(["synth", str(out), *flags]) == 2
    assert "need --frames >= 1 and --size >= 2" in capsys.readouterr().err and not out.exists()


def test_a_client_made_outside_an_event_loop_is_refused_at_once():
    """Its channel would belong to no loop: ``open`` under ``asyncio.run`` then waited for ever."""
    with pytest.raises(RuntimeError, match="inside the async function"):
        Client("127.0.0.1:1")


def test_a_receive_waiting_on_a_reconnected_call_gets_a_stream_error(server):
    """Not a bare CancelledError, which a task group would take for its own cancellation."""
    clip = make_video(seed=75, frames=2)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=10))
            await stream.process(clip[0])
            waiting = asyncio.ensure_future(stream.receive())
            await asyncio.sleep(0.1)
            await stream.reconnect()
            with pytest.raises(StreamError) as error:
                await waiting
            answer = await stream.process(clip[1])  # the stream goes on on its new call
            await stream.close()
            return error.value, answer

    error, answer = run(scenario())
    assert "was cancelled" in str(error) and isinstance(answer, FrameResult) and answer.frame_index == 1


def test_stream_sources_that_cannot_give_frames_are_named(tmp_path, capsys):
    import wave

    sound = tmp_path / "sound.wav"
    with wave.open(str(sound), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(8000)
        file.writeframes(bytes(1600))
    assert main(["stream", str(sound), "--target", "127.0.0.1:1"]) == 2
    assert "holds no video stream" in capsys.readouterr().err
    cases = [  # checked by the argument parser: exit status 2 with the usage
        (["camera:abc"], "after 'camera:' comes a device number"),
        (["synthetic:x"], "after 'synthetic:' comes a frame count"),
        (["synthetic:5", "--max-frames", "0"], "--max-frames: must be a whole number >= 1, got '0'"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exited:
            main(["stream", *args, "--target", "127.0.0.1:1"])
        assert exited.value.code == 2, args
        assert message in capsys.readouterr().err, args


def test_an_output_in_a_missing_folder_is_refused_before_streaming(tmp_path, capsys):
    out = tmp_path / "missing" / "overlay.gif"
    assert main(["stream", "synthetic:2", "--target", "127.0.0.1:1", "--out", str(out)]) == 2
    assert f"the folder {out.parent} does not exist" in capsys.readouterr().err


def test_a_refused_stream_leaves_an_earlier_jsonl_file_as_it_was(server, tmp_path, capsys):
    """The JSON-lines file is opened once the server accepts the stream, not before connecting."""
    jsonl = tmp_path / "results.jsonl"
    jsonl.write_text('{"frame_index": 0}\n')
    assert main(["stream", "synthetic:2", "--target", server.target, "--model", "absent", "--jsonl", str(jsonl)]) == 1
    assert "absent" in capsys.readouterr().err
    assert jsonl.read_text() == '{"frame_index": 0}\n'
    assert main(["stream", "synthetic:2", "--target", server.target, "--jsonl", str(jsonl)]) == 0
    assert len(jsonl.read_text().splitlines()) == 2


def test_the_cli_reads_its_bearer_token_from_a_file(start_server, tmp_path, capsys):
    server = start_server(auth_token="s3cret")
    token_file, empty = tmp_path / "token", tmp_path / "empty"
    token_file.write_text("s3cret\n")
    empty.write_text(" \n")
    assert main(["describe", "--target", server.target, "--token-file", str(token_file)]) == 0
    assert '"name": "tiny"' in capsys.readouterr().out
    assert main(["describe", "--target", server.target, "--token-file", str(empty)]) == 2
    assert f"--token-file {empty} is empty" in capsys.readouterr().err
    assert main(["describe", "--target", server.target]) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    with pytest.raises(SystemExit) as both:
        main(["describe", "--target", server.target, "--token", "s3cret", "--token-file", str(token_file)])
    assert both.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_a_folder_of_images_of_mixed_sizes_streams_into_one_overlay(server, tmp_path):
    folder, out = tmp_path / "frames", tmp_path / "overlay.gif"
    folder.mkdir()
    first, second = make_video(seed=76, frames=2)
    Image.fromarray(first).save(folder / "0000.png")
    Image.fromarray(second).resize((64, 48)).save(folder / "0001.png")
    assert main(["stream", str(folder), "--target", server.target, "--out", str(out)]) == 0
    with Image.open(out) as overlay:
        assert overlay.n_frames == 2 and overlay.size == first.shape[1::-1]


def test_channel_options_spread_one_clients_streams_over_several_servers(start_server):
    """Round robin over the addresses of a target (what a headless Service's DNS name gives): each stream of one
    client is a new call, so streams alternate between the servers."""
    first, second = start_server(), start_server()
    ports = [server.target.rsplit(":", 1)[1] for server in (first, second)]
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)
    clip = make_video(seed=77, frames=1)

    async def scenario():
        async with Client(target, channel_options=[("grpc.lb_policy_name", "round_robin")]) as client:
            for _ in range(4):  # health checks rotate too: both connections are up before the streams open
                await client.wait_ready(10)
            streams = [await client.open() for _ in range(4)]
            for stream in streams:
                await stream.process(clip[0])
            counts = (first.session_count(), second.session_count())
            for stream in streams:
                await stream.close()
            return counts

    counts = run(scenario())
    assert sum(counts) == 4 and min(counts) >= 1, counts  # (2, 2) once both connections are up


@pytest.mark.parametrize("size", [0, 2**31])
def test_a_message_limit_grpc_cannot_take_is_refused_when_the_client_is_made(size):
    async def make() -> None:
        Client("127.0.0.1:1", max_message_bytes=size)

    with pytest.raises(ValueError, match=r"max_message_bytes must be between 1 and 2\*\*31 - 1"):
        run(make())


def test_options_that_cannot_be_sent_are_refused_before_a_call_is_made(server):
    """A string where an enum member belongs: refused at once with what to pass, and the server sees no call."""

    async def scenario():
        async with Client(server.target) as client:
            with pytest.raises(ValueError, match=r"the open cannot be sent: .*frame_fit=FrameFit\.CROP"):
                await client.open(StreamOptions(frame_fit="crop"))  # type: ignore[arg-type]
            for size in [(-1, 5), (0, 0), (64,), (64.0, 64)]:  # not an enum's fault: the message says what is
                with pytest.raises(ValueError, match=r"mask_size must be \(height, width\) in pixels"):
                    await client.open(StreamOptions(mask_size=size))  # type: ignore[arg-type]

    run(scenario())
    assert server.session_count() == 0
    refused = server.server.metrics.calls_refused
    assert not [s for metric in refused.collect() for s in metric.samples if s.name.endswith("_total") and s.value]


def test_a_reconnect_cancelled_at_any_point_leaves_the_stream_able_to_reconnect(server):
    """A cancelled open left its write pending for ever on the call it gave up (grpc.aio never ends a write on a
    call cancelled before its first message), holding the lock every later write of the stream waited on: each
    ``reconnect()`` after it hung. Cancelled after 0 to 7 turns of the event loop, every point of the open is hit."""
    clip = make_video(seed=76, frames=1)

    async def scenario() -> list[int]:
        answered = []
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            await stream.process(clip[0])
            for turns in range(8):
                reconnecting = asyncio.ensure_future(stream.reconnect())
                for _ in range(turns):
                    await asyncio.sleep(0)
                reconnecting.cancel()
                with contextlib.suppress(asyncio.CancelledError, StreamError):
                    await reconnecting
                await asyncio.wait_for(stream.reconnect(), 10)
                answered.append((await asyncio.wait_for(stream.process(clip[0]), 10)).frame_index)
            await stream.close()
        return answered

    assert run(scenario()) == list(range(1, 9))


def test_a_send_on_a_call_cancelled_under_it_is_a_stream_error(server):
    """A send blocked by flow control (the server reads no more: here, frames far larger than its window) when
    another task cancels the stream ends with StreamError, not a bare CancelledError, which a task group would take
    for its own cancellation."""
    frame = np.random.default_rng(0).integers(0, 255, (1000, 1000, 3), dtype=np.uint8)

    async def scenario() -> BaseException | None:
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))

            async def send_until_blocked() -> None:
                while True:
                    await stream.send(frame)

            sending = asyncio.ensure_future(send_until_blocked())
            await asyncio.sleep(1.0)  # the window is full: a send waits
            assert not sending.done()
            stream.cancel()
            try:
                await asyncio.wait_for(sending, 10)
            except BaseException as error:  # which one is the point
                return error
            return None

    error = run(scenario())
    assert isinstance(error, StreamError), repr(error)
    assert "cancel" in str(error)
