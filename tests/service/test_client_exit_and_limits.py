"""The ``stream`` command's exit status when the server answers frames with errors, and the client's check that
a frame fits one message before it sends it (a refused frame leaves the stream as it was)."""

from __future__ import annotations

import io
import json

import grpc
import numpy as np
import pytest
from PIL import Image
from service_helpers import make_video, run

from service.client import Client, FrameResult, StreamError
from service.client.__main__ import main
from service.client.reconnection import worth_reconnecting
from service.errors import ErrorCode

ONE_MIB = 1024 * 1024


def _noise(height: int, width: int) -> np.ndarray:
    """A frame of noise, which does not compress: as PNG it is larger than raw, so one too large raw fits no way."""
    return np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_stream_command_exits_1_when_the_server_answers_frames_with_errors(start_server, tmp_path, capsys):
    """A folder whose first frame is 30x40 pixels (the stream's mask size) and whose next two are 80x80, sent to
    a server that takes at most 64x64 pixels: the first gets a result, the other two an in-band error each."""
    server = start_server(max_image_pixels=64 * 64)
    folder, jsonl = tmp_path / "frames", tmp_path / "results.jsonl"
    folder.mkdir()
    Image.fromarray(make_video(seed=82, frames=1)[0]).save(folder / "0000.png")
    for index, frame in enumerate(make_video(seed=83, frames=2, size=(80, 80)), start=1):
        Image.fromarray(frame).save(folder / f"{index:04d}.png")
    assert main(["stream", str(folder), "--target", server.target, "--jsonl", str(jsonl)]) == 1
    assert f"3 frames from 3 images in {folder}: 1 results, 0 dropped, 2 errors" in capsys.readouterr().err
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [(line["frame_index"], line["outcome"]) for line in lines] == [(0, "result"), (1, "error"), (2, "error")]
    assert lines[1]["code"] == lines[2]["code"] == "IMAGE_TOO_LARGE"


def test_stream_command_exits_0_when_every_frame_gets_a_result(server, capsys):
    assert main(["stream", "synthetic:2", "--target", server.target]) == 0
    assert "2 frames from 2 synthetic frames: 2 results, 0 dropped, 0 errors" in capsys.readouterr().err


def test_a_raw_frame_larger_than_one_message_is_refused_before_sending_and_the_stream_goes_on(server):
    """A raw 700x700 frame is 1,470,000 bytes: more than a 1 MiB message carries, though less than 4 MiB; of noise,
    it is larger still as PNG."""
    big = _noise(700, 700)
    small = make_video(seed=81, frames=1)[0]

    async def scenario():
        async with Client(server.target, max_message_bytes=ONE_MIB) as client:
            stream = await client.open()
            with pytest.raises(ValueError) as refused:
                await stream.send(big)
            state = (stream.unanswered, stream.next_frame_index)
            answer = await stream.process(small)
            await stream.close()
            return refused.value, state, answer

    refused, (unanswered, next_index), answer = run(scenario())
    message = str(refused)
    assert message.startswith("frame 0: the RAW_RGB8 700x700 image is 1,470,000 bytes, more than one message carries")
    assert "max_message_bytes 1,048,576" in message and "bytes as PNG (lossless)" in message
    assert unanswered == [] and next_index == 0
    assert isinstance(answer, FrameResult) and answer.frame_index == 0, answer


def test_the_frame_size_limit_leaves_256_bytes_for_the_other_fields_and_counts_the_text_fields(server):
    """1 MiB - 256 = 1,048,320 bytes = a raw 546x640 frame: it fits with an empty ``camera_frame_id`` and trace
    context but not with a one-byte id or tracestate (noise, so that it does not fit as PNG either)."""
    frame = _noise(546, 640)
    assert frame.nbytes == ONE_MIB - 256

    async def scenario():
        async with Client(server.target, max_message_bytes=ONE_MIB) as client:
            stream = await client.open()
            with pytest.raises(ValueError, match="1,048,320 bytes, more than one message carries"):
                await stream.send(frame, camera_frame_id="x")
            with pytest.raises(ValueError, match="1,048,320 bytes, more than one message carries"):
                await stream.send(frame, tracestate="x")
            refused_state = (stream.unanswered, stream.next_frame_index)
            answer = await stream.process(frame)
            await stream.close()
            return refused_state, answer

    (unanswered, next_index), answer = run(scenario())
    assert unanswered == [] and next_index == 0
    assert isinstance(answer, FrameResult) and answer.frame_index == 0, answer


def test_a_jpeg_frame_larger_than_one_message_is_told_to_lower_the_quality_not_to_send_jpeg(server):
    """A 1000x1000 noise frame at JPEG quality 95 is 1.18 MB: the advice is a lower quality (which fits: quality
    30 is 0.28 MB) or higher limits, not "send it as JPEG", which the caller already does; JPEG bytes given as
    they are get the same advice."""
    noise = np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    jpeg = io.BytesIO()
    Image.fromarray(noise).save(jpeg, format="JPEG", quality=95)

    async def scenario():
        async with Client(server.target, max_message_bytes=ONE_MIB) as client:
            stream = await client.open()
            refused = []
            for image, quality in ((noise, 95), (jpeg.getvalue(), None)):
                with pytest.raises(ValueError) as error:
                    await stream.send(image, jpeg_quality=quality)
                refused.append(str(error.value))
            answer = await stream.process(noise, jpeg_quality=30)
            await stream.close()
            return refused, answer

    (encoded, given), answer = run(scenario())
    assert encoded.startswith("frame 0: the JPEG image is 1,1") and "more than one message carries" in encoded
    assert "lower jpeg_quality (95 here)" in encoded, encoded
    assert "lower JPEG quality" in given, given
    for message in (encoded, given):
        assert "send it as JPEG" not in message and "--max-message-bytes on the server" in message
    assert isinstance(answer, FrameResult) and answer.frame_index == 0, answer


def test_a_raw_frame_over_the_message_limit_is_still_told_to_send_jpeg(server):
    async def scenario():
        async with Client(server.target, max_message_bytes=ONE_MIB) as client:
            stream = await client.open()
            with pytest.raises(ValueError) as refused:
                await stream.send(_noise(700, 700))
            await stream.close()
            return str(refused.value)

    assert "send it as JPEG (jpeg_quality=...)" in run(scenario())


def test_reconnect_continues_after_the_ends_a_resume_can_follow():
    """--reconnect tries again after a lost connection, a shutdown, a server still loading, and a server that took
    the stream for not reading (it waits for a resume); not after a refusal that another try would meet again, nor
    after an expiry (a source that stopped would be continued and expire again and again)."""
    lost = StreamError(grpc.StatusCode.UNAVAILABLE, None, "connection reset")
    ends = {code: StreamError(grpc.StatusCode.UNAVAILABLE, code, "") for code in ErrorCode}
    assert worth_reconnecting(lost)
    retried = {code for code, error in ends.items() if worth_reconnecting(error)}
    assert retried == {ErrorCode.SHUTTING_DOWN, ErrorCode.NOT_READY, ErrorCode.CLIENT_NOT_READING}
