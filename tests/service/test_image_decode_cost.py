"""What a frame may cost to decode is bounded by more than its pixels: JPEG scans, PNG text and ICC chunks, and the
header read that decides whether a frame is decoded on the event loop."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from service.decode_scheduling import cheap_to_decode
from service.errors import ErrorCode, FrameRejected
from service.image_headers import MAX_JPEG_SCANS
from service.images import MAX_DECODED_SIDE, fit_frame
from service.types import EncodedImage, FrameFit, ImageEncoding

MODEL = (64, 64)
MAX_PIXELS = 4096 * 4096
RESTART_MARKERS = range(0xD0, 0xD8)


def _jpeg_segments(jpeg: bytes) -> list[tuple[int, bytes]]:
    """``(marker code, bytes)`` of each segment of a JPEG after SOI, an SOS with its entropy-coded data, EOI last."""
    segments, pos = [], 2
    while jpeg[pos + 1] != 0xD9:
        code, end = jpeg[pos + 1], pos + 2 + int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        if code == 0xDA:  # the entropy-coded data runs to the next marker
            while not (jpeg[end] == 0xFF and jpeg[end + 1] != 0 and jpeg[end + 1] not in RESTART_MARKERS):
                end += 1
        segments.append((code, jpeg[pos:end]))
        pos = end
    return [*segments, (0xD9, b"\xff\xd9")]


def _progressive_jpeg(extra_scans: int = 0, before_scans: bytes = b"") -> tuple[bytes, int]:
    """A flat 64x64 progressive JPEG whose first AC scan is repeated ``extra_scans`` more times (what a decoder
    does with it costs a pass each, whatever it adds), ``before_scans`` inserted before its first scan; and its
    number of scans."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 130, 140)).save(buffer, "JPEG", progressive=True, quality=90)
    segments = _jpeg_segments(buffer.getvalue())
    scans = [segment for code, segment in segments if code == 0xDA]
    components = scans[0][4]
    ac_scan = next(s for s in scans if s[4] == 1 and s[5 + 2 * s[4]] > 0)  # one component, spectral start > 0
    assert components == 3 and len(ac_scan) < 100
    out = bytearray(b"\xff\xd8")
    for code, segment in segments:
        if code == 0xDA and segment is scans[0]:
            out += before_scans
        out += segment
        if segment is ac_scan:
            out += ac_scan * extra_scans
    return bytes(out), len(scans) + extra_scans


def _comment(payload: bytes) -> bytes:
    """A JPEG COM segment holding ``payload``."""
    return b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload


def _fit(data: bytes, encoding: ImageEncoding) -> np.ndarray:
    return fit_frame(EncodedImage(encoding, data), MODEL, MAX_PIXELS, FrameFit.STRETCH).pixels


def test_a_jpeg_of_more_scans_than_the_limit_is_refused_and_one_at_the_limit_decodes():
    """Each scan is a pass over the whole image (about 1 ms at 4096 x 4096): thousands of tiny repeated ones made a
    1 MB frame take 35 s. The limit counts them before libjpeg runs, and the message says how many and the limit."""
    normal, scans = _progressive_jpeg()
    assert 5 <= scans <= 20, "a standard progressive JPEG"
    expected = _fit(normal, ImageEncoding.JPEG)
    at_limit, count = _progressive_jpeg(MAX_JPEG_SCANS - scans)
    assert count == MAX_JPEG_SCANS
    np.testing.assert_allclose(_fit(at_limit, ImageEncoding.JPEG), expected, atol=2 / 255)
    for over in (1, 2000):
        data, count = _progressive_jpeg(MAX_JPEG_SCANS - scans + over)
        with pytest.raises(FrameRejected) as rejected:
            _fit(data, ImageEncoding.JPEG)
        assert rejected.value.code == ErrorCode.UNDECODABLE_IMAGE
        assert f"the JPEG has {count:,} scans" in rejected.value.message
        assert f"at most {MAX_JPEG_SCANS} scans" in rejected.value.message


def test_jpeg_scans_are_counted_by_segments_not_by_byte_pairs():
    """0xFF 0xDA in a comment, or in data after the end of the image (a phone's motion photo appends a video), is
    not a scan; a comment's 0xFF 0xD9 does not end the image either, so scans after it still count."""
    normal, _ = _progressive_jpeg()
    many_pairs = b"\xff\xda" * (2 * MAX_JPEG_SCANS)
    in_comment = normal[:2] + _comment(many_pairs) + normal[2:]
    after_end = normal + many_pairs
    expected = _fit(normal, ImageEncoding.JPEG)
    for data in (in_comment, after_end):
        np.testing.assert_array_equal(_fit(data, ImageEncoding.JPEG), expected)
    hidden, count = _progressive_jpeg(2 * MAX_JPEG_SCANS, before_scans=_comment(b"\xff\xd9"))
    with pytest.raises(FrameRejected) as rejected:
        _fit(hidden, ImageEncoding.JPEG)
    assert f"the JPEG has {count:,} scans" in rejected.value.message


def _png(width: int, height: int, extra: bytes = b"", second_ihdr: tuple[int, int] | None = None) -> bytes:
    """An RGB PNG of ``width x height`` zeros (declared; IDAT of one row when it is taller than 64), ``extra``
    chunks after IHDR, optionally a second IHDR after them."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def ihdr(size: tuple[int, int]) -> bytes:
        return chunk(b"IHDR", struct.pack(">IIBBBBB", *size, 8, 2, 0, 0, 0))

    rows = b"\x00" * (1 + 3 * width) * (height if height <= 64 else 1)
    header = ihdr((width, height)) + extra + (ihdr(second_ihdr) if second_ihdr else b"")
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _ztxt_chunks(count: int) -> bytes:
    """``count`` zTXt chunks of one key each, every one inflating to just under Pillow's 1 MiB limit per chunk."""
    text = zlib.compress(b"\x00" * (PngImagePlugin.MAX_TEXT_CHUNK - 100), 9)
    chunks = []
    for i in range(count):
        data = b"k%d\x00\x00" % i + text
        chunks.append(struct.pack(">I", len(data)) + b"zTXt" + data + struct.pack(">I", zlib.crc32(b"zTXt" + data)))
    return b"".join(chunks)


def _flat_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_event_loop_check_reads_headers_without_pillow(monkeypatch):
    """A 15 KB PNG of zTXt chunks made Pillow's header parse inflate 14 MB (80 ms) on the event loop, for every
    stream: the check now reads the header's size with struct reads and never opens the image."""
    opened = []
    real_open = Image.open

    def recording_open(*args, **kwargs):
        opened.append(args)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", recording_open)
    stuffed = _png(64, 64, _ztxt_chunks(14))
    assert len(stuffed) <= 16 * 1024
    small_jpeg, _ = _progressive_jpeg()
    large_flat = _flat_png(2048, 2048)
    assert len(large_flat) <= 16 * 1024
    for data, cheap in ((stuffed, True), (small_jpeg, True), (large_flat, False), (b"GIF89a", True)):
        assert cheap_to_decode(EncodedImage(ImageEncoding.PNG, data), MODEL, FrameFit.STRETCH) is cheap
    assert opened == []


def test_a_header_that_changes_its_size_is_not_judged_small():
    """Pillow takes a PNG's last IHDR and a JPEG's last SOFn before the image data: a small first one must not get
    2048 x 2048 pixels decoded on the event loop."""
    twice = _png(8, 8, second_ihdr=(2048, 2048))
    assert Image.open(io.BytesIO(twice)).size == (2048, 2048)
    small_jpeg, _ = _progressive_jpeg()
    sof = next(segment for code, segment in _jpeg_segments(small_jpeg) if code == 0xC2)
    large_sof = sof[:5] + struct.pack(">HH", 2048, 2048) + sof[9:]
    two_sofs = small_jpeg[:2] + sof + small_jpeg[2:].replace(sof, large_sof)
    assert Image.open(io.BytesIO(two_sofs)).size == (2048, 2048)
    for data in (twice, two_sofs):
        assert not cheap_to_decode(EncodedImage(ImageEncoding.PNG, data), MODEL, FrameFit.STRETCH)


def test_png_text_and_icc_profile_chunks_are_not_inflated(monkeypatch):
    """The server uses neither: Pillow would inflate each zTXt, iTXt and iCCP chunk (up to 1 MiB apiece) and refuse
    more than 64 MiB of text; they are dropped before it reads the frame, which decodes as without them."""
    inflated = []
    real_inflate = PngImagePlugin._safe_zlib_decompress

    def recording_inflate(data: bytes) -> bytes:
        inflated.append(len(data))
        return real_inflate(data)

    monkeypatch.setattr(PngImagePlugin, "_safe_zlib_decompress", recording_inflate)
    pixels = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * 100_000, zip=True)
    info.add_itxt("XML:com.adobe.xmp", "<x/>" * 10_000, zip=True)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", pnginfo=info, icc_profile=b"\x00" * 100_000)
    saved = buffer.getvalue()
    assert saved.endswith(b"IEND\xaeB`\x82")
    with_chunks = saved[:-12] + _ztxt_chunks(2) + saved[-12:]  # text after the image data too (Pillow reads it last)
    assert all(kind in saved for kind in (b"zTXt", b"iTXt", b"iCCP"))
    expected = fit_frame(
        EncodedImage(ImageEncoding.RAW_RGB8, pixels.tobytes(), 48, 64, 3), MODEL, MAX_PIXELS, FrameFit.STRETCH
    )
    np.testing.assert_array_equal(_fit(with_chunks, ImageEncoding.PNG), expected.pixels)
    beyond_text_memory = _png(
        64, 64, _ztxt_chunks(PngImagePlugin.MAX_TEXT_MEMORY // PngImagePlugin.MAX_TEXT_CHUNK + 2)
    )
    assert _fit(beyond_text_memory, ImageEncoding.PNG).shape == (3, *MODEL)
    assert inflated == []


def _jpeg_declaring(width: int, height: int) -> bytes:
    small, _ = _progressive_jpeg()
    sof = next(segment for code, segment in _jpeg_segments(small) if code == 0xC2)
    return small.replace(sof, sof[:5] + struct.pack(">HH", height, width) + sof[9:])


PRIVATE_CHUNKS = b"".join(struct.pack(">I", 0) + b"prIv" + struct.pack(">I", zlib.crc32(b"prIv")) for _ in range(70))


@pytest.mark.parametrize(
    ("data", "encoding", "size"),
    [
        (_png(100_000, 100_000), ImageEncoding.PNG, "is 100000x100000 = 10000000000"),
        (_jpeg_declaring(65_535, 65_535), ImageEncoding.JPEG, "is 65535x65535 = 4294836225"),
        (_png(100_000, 100_000, PRIVATE_CHUNKS), ImageEncoding.PNG, f"has more than {2 * Image.MAX_IMAGE_PIXELS}"),
    ],
    ids=["png", "jpeg", "long-png-header"],
)
def test_a_header_beyond_pillows_own_limit_is_refused_in_the_servers_words(data, encoding, size):
    """Pillow refuses such an image as a "decompression bomb DOS attack" before the server sees its size; the
    answer is the server's own, naming the limit it applies (--max-image-pixels). A header too long to read
    cheaply is answered with Pillow's limit in place of the size."""
    with pytest.raises(FrameRejected) as rejected:
        _fit(data, encoding)
    assert rejected.value.code == ErrorCode.IMAGE_TOO_LARGE
    limit = f"this server accepts at most {MAX_PIXELS} (its --max-image-pixels)"
    assert rejected.value.message == f"the image {size} pixels; {limit}"


def _private_chunks(count: int) -> bytes:
    return b"".join(struct.pack(">I", 0) + b"prIv" + struct.pack(">I", zlib.crc32(b"prIv")) for _ in range(count))


@pytest.mark.parametrize(
    ("data", "encoding", "fragment"),
    [
        (_png(8, 8, _private_chunks(1100)), ImageEncoding.PNG, "chunks (at most 1024, and one per 4 KiB of its"),
        (
            _progressive_jpeg(before_scans=_comment(b"x") * 1025)[0],
            ImageEncoding.JPEG,
            "more than 1024 marker segments before its image data",
        ),
        (
            _progressive_jpeg(before_scans=b"\x00" * 70_000)[0],
            ImageEncoding.JPEG,
            "more than 65,536 stray bytes between its header segments",
        ),
    ],
    ids=["png chunks", "jpeg segments", "jpeg junk"],
)
def test_headers_pillow_would_read_for_seconds_are_refused(data, encoding, fragment):
    """Pillow reads chunks, segments and stray bytes in Python: 16 MiB of empty PNG chunks or JPEG comments took
    3.7 s, 16 MiB of junk 0.9 s. At the limits the frames still decode."""
    with pytest.raises(FrameRejected) as refused:
        _fit(data, encoding)
    assert refused.value.code == ErrorCode.UNDECODABLE_IMAGE and fragment in str(refused.value), refused.value
    _fit(_png(8, 8, _private_chunks(1000)), ImageEncoding.PNG)  # with IHDR, IDAT and IEND: 1,003 chunks
    _fit(_progressive_jpeg(before_scans=_comment(b"x") * 1000)[0], ImageEncoding.JPEG)


@pytest.mark.parametrize("encoding", [ImageEncoding.PNG, ImageEncoding.RAW_RGB8])
@pytest.mark.parametrize(("width", "height"), [(1, MAX_DECODED_SIDE + 1), (MAX_DECODED_SIDE + 1, 1)])
def test_a_side_longer_than_the_limit_is_refused_whatever_its_pixel_count(
    encoding: ImageEncoding, width: int, height: int
) -> None:
    """A 1 x 16,000,000 PNG of 31 KB is within 4096 x 4096 pixels but cost a decode thread seconds (a pass per row,
    and a resize across its length), holding up every other stream's frames; a side at the limit still decodes."""
    for side in (MAX_DECODED_SIDE, MAX_DECODED_SIDE + 1):
        size = (side, 1) if width > 1 else (1, side)
        if encoding == ImageEncoding.PNG:
            image = EncodedImage(encoding, _png(*size))
        else:
            image = EncodedImage(encoding, bytes(3 * side), height=size[1], width=size[0], channels=3)
        if side == MAX_DECODED_SIDE:
            assert fit_frame(image, MODEL, MAX_PIXELS, FrameFit.STRETCH).pixels.shape == (3, *MODEL)
            continue
        with pytest.raises(FrameRejected) as rejected:
            fit_frame(image, MODEL, MAX_PIXELS, FrameFit.STRETCH)
        assert rejected.value.code == ErrorCode.IMAGE_TOO_LARGE
        assert f"the image is {size[0]}x{size[1]} pixels" in rejected.value.message
        assert f"at most {MAX_DECODED_SIDE} pixels on a side" in rejected.value.message
