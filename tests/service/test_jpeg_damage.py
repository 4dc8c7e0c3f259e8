"""JPEG frames whose image data libjpeg finds damaged are refused; whole ones, warnings about stray bytes included,
decode as before (``service.jpeg_integrity`` and its use in ``service.images``)."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from service.errors import ErrorCode, FrameRejected
from service.images import prepare_frame
from service.types import EncodedImage, ImageEncoding

NOISE = np.random.default_rng(0).integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
"""Noise: every 8x8 block has plenty of scan data, so a cut or a flipped bit lands inside a block's codes."""
MAX_PIXELS = 1 << 25


def _jpeg(array: np.ndarray = NOISE, mode: str | None = None, **options: object) -> bytes:
    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def _scan_start(data: bytes) -> int:
    """Where the first scan's entropy-coded data begins (just after its SOS segment)."""
    sos = data.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")


def _frame(data: bytes, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    return prepare_frame(EncodedImage(ImageEncoding.JPEG, data), size, MAX_PIXELS)


def _refusal(data: bytes) -> FrameRejected:
    with pytest.raises(FrameRejected) as rejected:
        _frame(data)
    return rejected.value


def _libjpeg_warning(data: bytes) -> str | None:
    """libjpeg's first warning (or error) decoding ``data``, as libjpeg-turbo words it; ``None`` when it has none."""
    try:
        simplejpeg.decode_jpeg(data, strict=True)
    except ValueError as error:
        return str(error)
    return None


def _pillow_pixels(data: bytes) -> np.ndarray:
    """What Pillow alone makes of ``data`` as model input at its own size: RGB, ``[3, H, W]`` in ``[0, 1]``."""
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)
    return rgb.transpose(2, 0, 1) * np.float32(1 / 255)


def test_a_scan_cut_short_but_closed_with_its_end_marker_is_refused():
    """An MJPEG camera's partial frame: Pillow decodes it, its lower part flat grey; libjpeg warns."""
    data = _jpeg()
    cut = data[: len(data) // 2] + b"\xff\xd9"
    pillow = np.asarray(Image.open(io.BytesIO(cut)).convert("RGB"))
    assert (pillow[-16:] == 128).all(), "Pillow fills the missing rows with grey and says nothing"
    refusal = _refusal(cut)
    assert refusal.code == ErrorCode.UNDECODABLE_IMAGE
    assert refusal.message == (
        "the JPEG's image data is damaged: premature end of data segment (a frame cut short and closed?)"
    )


def test_a_header_larger_than_its_data_is_refused():
    """A 64x64 frame's scan data under a header that says 4096x4096 (a few hundred bytes that Pillow decoded into
    16 million grey pixels) runs out long before the image does."""
    data = bytearray(_jpeg(NOISE[:64, :64]))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (4096).to_bytes(2, "big") * 2  # height, width
    refusal = _refusal(bytes(data))
    assert refusal.code == ErrorCode.UNDECODABLE_IMAGE
    assert "damaged: premature end of data segment" in refusal.message


def test_a_flipped_bit_is_refused_when_libjpeg_detects_it():
    """A progressive JPEG (whose Huffman decoding libjpeg checks code by code) with one flipped bit in its scan
    data: the first flip, in order, that libjpeg reports as a bad Huffman code."""
    data = _jpeg(progressive=True)
    flipped = None
    for position in range(_scan_start(data) + 8, len(data) - 2, 7):
        candidate = bytearray(data)
        candidate[position] ^= 0x10
        if _libjpeg_warning(bytes(candidate)) == "Corrupt JPEG data: bad Huffman code":
            flipped = bytes(candidate)
            break
    assert flipped is not None, "no flip libjpeg reports as a bad Huffman code: the search needs another step"
    Image.open(io.BytesIO(flipped)).load()  # Pillow decodes it without a word
    refusal = _refusal(flipped)
    assert refusal.code == ErrorCode.UNDECODABLE_IMAGE
    assert refusal.message == ("the JPEG's image data is damaged: bad Huffman code (bits lost or changed on the way?)")


def test_a_lost_restart_interval_is_refused():
    """A JPEG with restart markers (as some cameras write) that lost the data of one interval, RST2 to RST3."""
    data = _jpeg(restart_marker_rows=1)
    start = _scan_start(data)
    markers = [start + m.start() for m in re.finditer(rb"\xff[\xd0-\xd7]", data[start:])]
    lost = data[: markers[2]] + data[markers[3] :]
    refusal = _refusal(lost)
    assert refusal.code == ErrorCode.UNDECODABLE_IMAGE
    assert refusal.message == (
        "the JPEG's image data is damaged: found marker 0xd3 instead of RST2 (a restart interval lost on the way?)"
    )


@pytest.mark.parametrize(
    ("stray", "warned"), [(b"\x00\x00", False), (bytes(range(64)), True)], ids=["two zeros", "64 bytes"]
)
def test_stray_bytes_before_the_end_marker_still_decode_to_the_same_pixels(stray: bytes, warned: bool):
    """USB webcams' MJPEG frames carry bytes after the scan data, and libjpeg warns about them on every frame
    ("extraneous bytes before marker 0xd9", unless its bit buffer had read them already): the image is whole, so
    the frame decodes as without them."""
    data = _jpeg()
    padded = data[:-2] + stray + data[-2:]
    warning = _libjpeg_warning(padded)
    if warned:
        assert warning is not None
        assert re.fullmatch(r"Corrupt JPEG data: \d+ extraneous bytes before marker 0xd9", warning), warning
    np.testing.assert_array_equal(_frame(padded), _frame(data))
    np.testing.assert_array_equal(_frame(padded), _pillow_pixels(data))


@pytest.mark.parametrize(
    ("mode", "options"),
    [(None, {"progressive": True}), ("L", {}), ("CMYK", {}), (None, {"restart_marker_rows": 1})],
    ids=["progressive", "grayscale", "CMYK", "restart markers"],
)
def test_whole_jpegs_of_every_kind_decode_as_pillow_decodes_them(mode: str | None, options: dict[str, object]):
    data = _jpeg(mode=mode, **options)
    assert _libjpeg_warning(data) is None
    np.testing.assert_array_equal(_frame(data), _pillow_pixels(data))


def test_the_reduced_scale_decode_is_pillows_draft_as_before():
    """A large JPEG for a small input is decoded at 1/8 scale by Pillow's draft, pixel for pixel as before."""
    big = np.kron(NOISE, np.ones((8, 8, 1), np.uint8))  # 768x1024
    data = _jpeg(big)
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (128, 96))  # twice the 64x48 input
    assert image.size == (128, 96)
    resized = image.convert("RGB").resize((64, 48), Image.Resampling.BILINEAR)
    expected = np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) * np.float32(1 / 255)
    np.testing.assert_array_equal(_frame(data, (48, 64)), expected)


def test_a_jpeg_cut_without_its_end_marker_keeps_its_own_refusal():
    """libjpeg's "Premature end of JPEG file" is left to the existing refusal, which says where the data ends."""
    data = _jpeg()
    refusal = _refusal(data[: len(data) // 2])
    assert refusal.code == ErrorCode.UNDECODABLE_IMAGE
    assert refusal.message.startswith("the JPEG data ends early: its 128x96 image is cut off after")


@pytest.mark.parametrize("check", [True, False], ids=["checked", "--no-jpeg-damage-check"])
def test_the_server_refuses_a_damaged_jpeg_unless_told_not_to_check(start_server, check: bool) -> None:
    """The check costs a second libjpeg pass over every JPEG, about as long as the decode: an operator may turn it
    off, and the frame is then answered from Pillow's decode, its missing part grey."""
    from service_helpers import run

    from service.client import Client, FrameError, FrameResult

    data = _jpeg()
    cut = EncodedImage(ImageEncoding.JPEG, data[: len(data) // 2] + b"\xff\xd9")
    server = start_server(jpeg_damage_check=check)

    async def scenario() -> object:
        async with Client(server.target) as client:
            stream = await client.open()
            answer = await stream.process(cut)
            await stream.close()
            return answer

    answer = run(scenario())
    if check:
        assert isinstance(answer, FrameError) and answer.code == ErrorCode.UNDECODABLE_IMAGE, answer
        assert "premature end of data segment" in answer.message
    else:
        assert isinstance(answer, FrameResult), answer
