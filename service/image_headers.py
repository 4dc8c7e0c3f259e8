"""What a frame's PNG or JPEG bytes say before Pillow decodes them: the format, the size its header declares (read
with a few struct reads: Pillow's header parse inflates a PNG's text chunks), how many scans a JPEG has, and the
PNG without the chunks the server never uses. The decoding itself is :mod:`service.images`.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import Iterator

MAX_JPEG_SCANS = 100
"""Most scans (start-of-scan segments) a JPEG frame may have. Each scan of a progressive JPEG is a pass over the whole
image however few its bytes (about 1 ms at 4096 x 4096, even decoded at a reduced scale), so a JPEG of 1 MB made of
thousands of tiny repeated scans takes half a minute to decode (16 MB: minutes) while its pixels are within
``--max-image-pixels``. Encoders write 1 scan (baseline) or about 10 (libjpeg's standard progressive script);
libjpeg-turbo's djpeg and jpegtran offer the same kind of limit (``-maxscans``) against this."""
JPEG_WALK_SEGMENTS = 4096
"""Most marker segments :func:`count_jpeg_scans` walks (microseconds each); encoders write a few dozen."""
_JPEG_LENGTH_MARKERS = frozenset([*range(0xC0, 0xD0), 0xDA, 0xDB, 0xDC, 0xDD, *range(0xE0, 0xF0), 0xFE])
"""Marker codes libjpeg reads with a 2-byte length and skips by it (SOFn, DHT, DAC, SOS, DQT, DNL, DRI, APPn, COM).
The others stand alone (SOI, RSTn, TEM), end the image (EOI) or make libjpeg stop with an error, or skip to the next
marker: a walk goes on right after them, which can only count more scans than libjpeg decodes, never fewer."""
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
"""A marker as libjpeg finds one in entropy-coded data: 0xFF and a byte other than 0x00 (a stuffed 0xFF data byte),
0xFF (fill) or 0xD0-0xD7 (a restart marker, which does not change where scans are)."""
_JPEG_SOF_MARKERS = frozenset([0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xDE])
"""Marker codes whose segment gives Pillow a JPEG's size (its ``SOF`` handler)."""
_PILLOW_JPEG_SEGMENTS = frozenset([*range(0xC0, 0xC8), *range(0xC9, 0xD0), *range(0xDA, 0xF0), 0xFE])
"""Marker codes Pillow skips by their length while reading a JPEG's header."""
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_START = b"\xff\xd8\xff"
_PNG_HEADER_END = frozenset({b"IDAT", b"fdAT", b"IEND"})
"""PNG chunks at which Pillow stops reading the header."""
_UNUSED_PNG_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt", b"iCCP"})
"""PNG chunks dropped before Pillow reads a frame: text and the ICC profile, which the server never uses and which
Pillow would decompress (zTXt, iTXt and iCCP, up to 1 MiB each: a 15 KB PNG of zTXt chunks took 80 ms to open)."""
_HEADER_SEGMENTS = 64
"""Most PNG chunks or JPEG segments :func:`header_size` reads before the image data."""


def image_format(data: bytes) -> str | None:
    """``"PNG"`` or ``"JPEG"`` by the first bytes of ``data``, as Pillow tells them apart; ``None`` for anything
    else (which Pillow refuses without reading further)."""
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    if data.startswith(_JPEG_START):
        return "JPEG"
    return None


def header_size(data: bytes) -> tuple[int, int] | None:
    """The ``(width, height)`` a PNG's or JPEG's header declares, as Pillow reads it, by a few struct reads: no
    Pillow, no decompression (Pillow's header parse inflates a PNG's text chunks), at most :data:`_HEADER_SEGMENTS`
    chunks or segments looked at.

    Returns ``None`` when ``data`` is neither a PNG nor a JPEG (:func:`image_format`), or its header is not the
    plain kind read here: a PNG whose first chunk is not its only IHDR before the image data, a JPEG with other
    than one SOFn before its first scan or with anything but segments there, or a header that is cut off or longer
    than :data:`_HEADER_SEGMENTS`.
    """
    kind = image_format(data)
    if kind == "PNG":
        return _png_header_size(data)
    if kind == "JPEG":
        return _jpeg_header_size(data)
    return None


def _png_header_size(data: bytes) -> tuple[int, int] | None:
    """:func:`header_size` of a PNG: its IHDR's width and height (big-endian 32-bit at bytes 8 and 12 of the
    chunk), if the IHDR is the first chunk and the only one before the image data."""
    size = None
    for index, (kind, start, end) in enumerate(itertools.islice(_png_chunks(data), _HEADER_SEGMENTS)):
        if (kind == b"IHDR") != (index == 0):
            return None
        if kind == b"IHDR":
            if end - start < 12 + 8:
                return None
            width, height = struct.unpack_from(">II", data, start + 8)
            size = (width, height)
        elif kind in _PNG_HEADER_END:
            return size
    return None


def _jpeg_header_size(data: bytes) -> tuple[int, int] | None:
    """:func:`header_size` of a JPEG: walks the segments after SOI (0xFF, a marker code, a big-endian length that
    counts itself) to the first SOS; the one SOFn segment's payload is precision, height and width."""
    size, pos = None, 2
    for _ in range(_HEADER_SEGMENTS):
        if data[pos : pos + 1] != b"\xff" or pos + 4 > len(data):
            return None  # fill bytes, junk, or the end: unusual here
        code, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
        if code == 0xDA:  # SOS: Pillow's header ends here
            return size
        if code not in _PILLOW_JPEG_SEGMENTS or length < 2:
            return None
        if code in _JPEG_SOF_MARKERS:
            if size is not None or length < 7 or pos + 9 > len(data):
                return None
            height, width = struct.unpack_from(">HH", data, pos + 5)
            size = (width, height)
        pos += 2 + length
    return None


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """``(type, start, end)`` of each whole chunk of a PNG in order (``data[start:end]`` is its length, type, data
    and CRC), from the signature to IEND or to a chunk that the end of ``data`` cuts off."""
    start = len(_PNG_SIGNATURE)
    while start + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, start)
        end = start + 12 + length
        if end > len(data):
            return
        kind = data[start + 4 : start + 8]
        yield kind, start, end
        if kind == b"IEND":
            return
        start = end


def without_unused_png_chunks(data: bytes) -> bytes:
    """A PNG's ``data`` without its :data:`_UNUSED_PNG_CHUNKS` (text and ICC profile; the other bytes as they are,
    a cut-off end included), or ``data`` itself when it has none."""
    view = memoryview(data)
    kept: list[memoryview] = []
    start = 0  # where the bytes not yet kept or dropped begin
    for kind, chunk_start, chunk_end in _png_chunks(data):
        if kind in _UNUSED_PNG_CHUNKS:
            if chunk_start > start:  # a run of dropped chunks adds nothing
                kept.append(view[start:chunk_start])
            start = chunk_end
    if start == 0:
        return data
    kept.append(view[start:])
    return b"".join(kept)


MAX_PNG_CHUNKS = 1024
"""Most chunks a PNG frame may have besides one per 4 KiB of its bytes (:func:`png_chunk_limit`). Pillow reads each
chunk in Python (a 16 MiB PNG of 1.4 million empty chunks took 3.7 s); encoders write a handful besides image data
split into chunks of 8-64 KiB."""
MAX_JPEG_HEADER_SEGMENTS = 1024
"""Most marker segments before a JPEG's first scan. Pillow reads each in Python (4 million comment segments in
16 MiB took 3.7 s); encoders write a few dozen (an ICC profile split over 64 KB segments: a few more)."""
MAX_JPEG_HEADER_SKIPPED = 65536
"""Most bytes Pillow steps over one at a time before a JPEG's first scan (fill bytes and junk between segments:
16 MiB of junk took 0.9 s); encoders write none."""


def png_chunk_limit(data: bytes) -> int:
    """The most chunks the PNG ``data`` may have: :data:`MAX_PNG_CHUNKS`, plus one per 4 KiB of its bytes."""
    return MAX_PNG_CHUNKS + len(data) // 4096


def png_chunk_count(data: bytes, limit: int) -> int:
    """The chunks of the PNG ``data``, counted up to ``limit + 1`` (the walk stops there)."""
    count = 0
    for _ in _png_chunks(data):
        count += 1
        if count > limit:
            break
    return count


def jpeg_header_work(data: bytes) -> tuple[int, int]:
    """What Pillow's JPEG header reader steps through before the first scan: marker segments, and bytes it steps
    over one at a time (0xFF fill bytes, junk), each counted up to its limit + 1
    (:data:`MAX_JPEG_HEADER_SEGMENTS`, :data:`MAX_JPEG_HEADER_SKIPPED`; the walk stops there)."""
    segments = skipped = 0
    pos = 2  # after SOI
    while pos + 1 < len(data) and segments <= MAX_JPEG_HEADER_SEGMENTS and skipped <= MAX_JPEG_HEADER_SKIPPED:
        marker = data.find(b"\xff", pos)
        if marker < 0 or marker + 1 >= len(data):  # junk to the end, which Pillow steps through too
            skipped += len(data) - pos
            break
        skipped += marker - pos  # junk before it
        code = data[marker + 1]
        if code in (0xFF, 0x00):  # a fill byte, or an escaped 0xFF: stepped over
            skipped += 1
            pos = marker + 1 if code == 0xFF else marker + 2
            continue
        segments += 1
        if code == 0xDA:  # SOS: the header ends
            break
        has_length = code in _PILLOW_JPEG_SEGMENTS and marker + 4 <= len(data)
        pos = marker + 2 + (max(int.from_bytes(data[marker + 2 : marker + 4], "big"), 2) if has_length else 0)
    return segments, skipped


def count_jpeg_scans(data: bytes) -> tuple[int, bool]:
    """How many scans libjpeg decodes from the JPEG ``data``, and whether that is all of them (``False``: at least
    that many; the walk stopped after :data:`JPEG_WALK_SEGMENTS` segments).

    Every SOS marker is a 0xFF 0xDA in the data, so while those are at most :data:`MAX_JPEG_SCANS` their number
    (an upper bound: an APPn segment such as an EXIF thumbnail may hold some) is the answer. Beyond, the segments
    are walked as libjpeg reads them, from SOI to EOI: each marker's segment skipped by its length
    (:data:`_JPEG_LENGTH_MARKERS`), an SOS's entropy-coded data up to the next marker (:data:`_JPEG_MARKER`).
    """
    scans = _ff_da_pairs(data)
    if scans <= MAX_JPEG_SCANS:
        return scans, True
    scans, pos = 0, 2
    for _ in range(JPEG_WALK_SEGMENTS):
        marker = _JPEG_MARKER.search(data, pos)
        if marker is None:
            return scans, True
        pos = marker.end()  # just after the marker code
        code = data[pos - 1]
        if code == 0xD9:  # EOI: libjpeg reads no further
            return scans, True
        if code in _JPEG_LENGTH_MARKERS:
            if pos + 2 > len(data):
                return scans, True
            if code == 0xDA:
                scans += 1
            pos += max(int.from_bytes(data[pos : pos + 2], "big"), 2)
    return scans, False


def _ff_da_pairs(data: bytes) -> int:
    """How many times 0xFF 0xDA occurs in ``data`` (about 1 ms a MB; the pair cannot overlap itself)."""
    return data.count(b"\xff\xda")
