"""``stream`` sends a frame whose raw pixels do not fit one message as PNG (lossless) instead of failing, with the
same slots as raw; and what it says when a frame fits neither way, or when the server's message limit is lower."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image
from service_helpers import run

from service.client import Client, StreamError, encode_image
from service.client.__main__ import main
from service.client.encoding import encode_png
from service.client.frame_encoder import FrameEncoder
from service.client.synthetic import synthetic_frames
from service.client.trajectory import TRAJECTORY_ARRAYS
from service.types import EncodedImage, ImageEncoding

ONE_MIB = 1024 * 1024
SIZE = (600, 640)
"""A raw 600x640 frame is 1,152,000 bytes: more than a 1 MiB message carries (1,048,320 bytes of image), though
its PNG is a few kB."""


def _folder(path: Path, frames: list[np.ndarray]) -> Path:
    """``frames`` written as lossless PNG files in the new folder ``path``."""
    path.mkdir()
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(path / f"{index:04d}.png")
    return path


def test_frames_too_large_for_raw_go_as_png_with_the_slots_of_raw_frames(server, tmp_path, capsys):
    """The same frames streamed with a 1 MiB client limit (sent as PNG) and with the default 16 MiB (sent raw): the
    slot files are equal, and the PNG run says so once on stderr."""
    folder = _folder(tmp_path / "frames", list(synthetic_frames(3, SIZE)))
    assert np.zeros((*SIZE, 3), np.uint8).nbytes > ONE_MIB
    as_png, as_raw = tmp_path / "png.npz", tmp_path / "raw.npz"
    command = ["stream", str(folder), "--target", server.target, "--fps", "15"]
    assert main([*command, "--slots", str(as_png), "--max-message-bytes", str(ONE_MIB)]) == 0
    err = capsys.readouterr().err
    assert err.count("sent as PNG, lossless") == 1, err
    assert "note: frame 0 (640x600) is 1,152,000 bytes raw" in err and "--max-message-bytes 1,048,576" in err
    assert "3 frames from 3 images" in err and "3 results, 0 dropped, 0 errors" in err
    assert main([*command, "--slots", str(as_raw)]) == 0
    assert "PNG" not in capsys.readouterr().err
    png, raw = np.load(as_png), np.load(as_raw)
    assert len(png["frame_index"]) == 3
    for name in TRAJECTORY_ARRAYS:
        if name in ("capture_time_ns",):  # the wall-clock anchor of each run
            continue
        np.testing.assert_array_equal(png[name], raw[name], err_msg=name)


def test_frames_are_sized_to_a_server_limit_below_the_clients(start_server, tmp_path, capsys):
    """A server of 1 MiB messages states its limit in its model card: the client (16 MiB) sizes its frames to it,
    says so once, and sends the raw 600x640 frames, which that server would refuse, as PNG."""
    server = start_server(max_message_bytes=ONE_MIB)
    folder = _folder(tmp_path / "frames", list(synthetic_frames(2, SIZE)))
    assert main(["stream", str(folder), "--target", server.target]) == 0
    err = capsys.readouterr().err
    assert err.count("note: the server takes messages of at most 1,048,576 bytes") == 1, err
    assert "fewer than --max-message-bytes here (16,777,216)" in err
    assert "(the server's --max-message-bytes 1,048,576): such frames are sent as PNG" in err, err
    assert "2 results, 0 dropped, 0 errors" in err


def test_a_server_limit_below_the_clients_is_named_with_its_flag_and_the_matching_client_flag(
    start_server, tmp_path, capsys, monkeypatch
):
    """Where the card cannot be read (by the command or the library), a server of 1 MiB messages refuses a raw 600x640
    frame the client (16 MiB) sends: the error names the server's --max-message-bytes and the client's flag that makes
    such frames go as PNG, which then works."""
    server = start_server(max_message_bytes=ONE_MIB)
    folder = _folder(tmp_path / "frames", list(synthetic_frames(2, SIZE)))
    command = ["stream", str(folder), "--target", server.target]

    async def unreadable_card(*_: object, **__: object) -> None:
        raise StreamError(grpc.StatusCode.UNAVAILABLE, None, "no card")

    monkeypatch.setattr(Client, "describe", unreadable_card)
    assert main(command) == 1
    err = capsys.readouterr().err
    assert (
        "refused a 1,152,0" in err and "it takes messages of at most 1,048,576 bytes (its --max-message-bytes)" in err
    )
    assert f"pass --max-message-bytes {ONE_MIB} here too" in err, err
    assert main([*command, "--max-message-bytes", str(ONE_MIB)]) == 0
    assert "2 results, 0 dropped, 0 errors" in capsys.readouterr().err


def test_a_frame_that_fits_neither_raw_nor_as_png_names_the_command_line_flags(server, tmp_path, capsys):
    """Noise does not compress: its PNG is larger than raw, so the frame fits no lossless way; the advice names
    --jpeg-quality and --max-message-bytes (the flags), not the library's ``jpeg_quality=``. A JPEG too large at
    --jpeg-quality 95 is told to lower it."""
    noise = np.random.default_rng(0).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    folder = _folder(tmp_path / "noise", [noise])
    command = ["stream", str(folder), "--target", server.target, "--max-message-bytes", str(ONE_MIB)]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "error: frame 0: the 640x600 frame does not fit one message (--max-message-bytes 1,048,576)" in err, err
    assert "raw (1,152,000 bytes) or as PNG" in err and "--jpeg-quality Q" in err and "jpeg_quality=" not in err
    big_noise = np.random.default_rng(1).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    folder = _folder(tmp_path / "big_noise", [big_noise])
    command = ["stream", str(folder), "--target", server.target, "--max-message-bytes", str(ONE_MIB)]
    assert main([*command, "--jpeg-quality", "95"]) == 2
    err = capsys.readouterr().err
    assert "as JPEG at --jpeg-quality 95, more than one message carries" in err and "lower --jpeg-quality" in err


def test_a_frame_over_the_servers_pixel_limit_is_refused_naming_the_server_flag(start_server, tmp_path, capsys):
    """A 700x700 frame sent as PNG (over a 1 MiB message raw) to a server of at most 640x640 pixels (the stream's
    masks, 640 a side at most, fit): the server refuses it whatever its encoding, and the refusal printed names the
    server's flag."""
    server = start_server(max_image_pixels=640 * 640)
    folder = _folder(tmp_path / "frames", list(synthetic_frames(1, (700, 700))))
    assert main(["stream", str(folder), "--target", server.target, "--max-message-bytes", str(ONE_MIB)]) == 1
    err = capsys.readouterr().err
    assert "sent as PNG" in err and "frame 0 refused: IMAGE_TOO_LARGE" in err, err
    assert "the server's --max-image-pixels sets that limit" in err, err


def test_encode_image_png_is_lossless_and_the_library_error_names_its_arguments(server):
    """``encode_image(frame, png=True)`` decodes to the very pixels; the library's errors for a raw frame over the
    limit name the Python arguments, not the command-line flags: ``jpeg_quality=`` for an array (which fits neither
    raw nor as PNG), ``png=True`` too for a raw image given encoded."""
    frame = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    encoded = encode_image(frame, png=True)
    assert encoded.encoding == ImageEncoding.PNG
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encoded.data))), frame)
    assert encode_png(frame, 6).encoding == ImageEncoding.PNG
    with pytest.raises(ValueError, match="not both"):
        encode_image(frame, 90, png=True)

    noise = np.random.default_rng(3).integers(0, 256, (*SIZE, 3), dtype=np.uint8)

    async def scenario() -> list[str]:
        async with Client(server.target, max_message_bytes=ONE_MIB) as client:
            stream = await client.open()
            refusals = []
            for image in (noise, encode_image(np.zeros((*SIZE, 3), np.uint8))):
                with pytest.raises(ValueError) as refused:
                    await stream.send(image)
                refusals.append(str(refused.value))
            answer = await stream.process(encode_image(np.zeros((*SIZE, 3), np.uint8), png=True))
            await stream.close()
            assert answer.frame_index == 0
            return refusals

    array, given_raw = run(scenario())
    assert "bytes as PNG (lossless); send it as JPEG (jpeg_quality=...)" in array, array
    assert "jpeg_quality=..." in given_raw and "encode_image(image, png=True)" in given_raw, given_raw
    for message in (array, given_raw):
        assert "--jpeg-quality" not in message


def test_a_4k_frame_streams_as_png_under_the_default_limits(server, tmp_path, capsys):
    """A 3840x2160 frame is 24,883,200 bytes raw, over the default 16 MiB on both sides: it goes as PNG."""
    folder = _folder(tmp_path / "k4", list(synthetic_frames(1, (2160, 3840))))
    assert main(["stream", str(folder), "--target", server.target, "--slots", str(tmp_path / "k4.npz")]) == 0
    err = capsys.readouterr().err
    assert "note: frame 0 (3840x2160) is 24,883,200 bytes raw" in err and "1 results" in err, err
    assert len(np.load(tmp_path / "k4.npz")["frame_index"]) == 1


def test_png_encoding_runs_off_the_event_loop():
    """While a 4K frame is encoded as PNG (about 0.15 s for a synthetic one, 0.7 s for a photo), the event loop
    keeps running: the answers to the frames in flight are still read."""
    frame = next(iter(synthetic_frames(1, (2160, 3840))))
    encoder = FrameEncoder(None, 16 * ONE_MIB)

    async def scenario() -> tuple[EncodedImage, float, float]:
        gaps: list[float] = []

        async def tick() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.002)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.01)
        start = time.perf_counter()
        encoded = await encoder.encode(frame, 0)
        took = time.perf_counter() - start
        await asyncio.sleep(0.01)  # the ticker records the gap it is in
        ticker.cancel()
        return encoded, took, max(gaps)

    try:
        encoded, took, longest_gap = run(scenario())
    finally:
        encoder.close()
    assert encoded.encoding == ImageEncoding.PNG and encoder.png_frames == 1
    assert longest_gap < took / 3, (longest_gap, took)
