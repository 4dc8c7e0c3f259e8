"""Whether a JPEG's image data (its entropy-coded scan data) is whole, as libjpeg finds when it decodes it.

Pillow decodes with libjpeg but drops libjpeg's warnings, and some of them mean that pixels were made up: a scan
that ends early (an MJPEG camera's frame cut short and closed with its end marker) decodes with its missing part
flat grey, and a bad Huffman code leaves the blocks after it wrong. :func:`jpeg_damage` decodes the JPEG once more
with libjpeg-turbo (through ``simplejpeg``, the server extra's), told to stop at libjpeg's first warning, and says
which warning stopped it when that warning means damaged data (:data:`DAMAGE`).

Other warnings do not refuse a frame: above all "N extraneous bytes before marker 0xd9", which USB webcams' MJPEG
frames raise on every frame (stray bytes after whole scan data). Stopping at the first warning, libjpeg checks
nothing after such a warning (or after a header one, such as an unknown JFIF revision). Damage that libjpeg does not
report is not found either: libjpeg-turbo reads a baseline JPEG's Huffman codes mostly without reporting bad ones,
so most flipped bits there decode to a few wrong blocks, or end the scan data early, reported as extraneous bytes
like a webcam's (a progressive JPEG's bad codes, a lost restart interval and a cut-short scan are reported).

The check decodes at 1/8 scale to grayscale: libjpeg still reads every bit of the scan data (of every component and
scan) but skips most of the inverse DCT, the upsampling and the colour conversion. Most of a JPEG decode is reading
the scan data, though, so the check costs a third to a half of Pillow's full-size decode (measured on a 2-core Xeon:
0.6-1.1 ms for 640x480 frames of 36-90 KB, 3-11 ms for 1920x1080 ones of 240-610 KB), about as much as Pillow's own
decode at a reduced scale. It runs before Pillow's decode, so a damaged frame is refused at its first bad byte, before
Pillow fills a large image with grey (a 640-byte 4096x4096 frame: 2 ms instead of 100). The server's
``--no-jpeg-damage-check`` turns the check off (:func:`service.images.fit_frame`'s ``check_jpeg_data``).
"""

from __future__ import annotations

DAMAGE = (
    ("premature end of data segment", "a frame cut short and closed?"),
    ("bad Huffman code", "bits lost or changed on the way?"),
    ("bad arithmetic code", "bits lost or changed on the way?"),
    ("instead of RST", "a restart interval lost on the way?"),
)
"""libjpeg's warnings that mean damaged image data (a part of each message, as libjpeg-turbo words it after its
"Corrupt JPEG data: " prefix), with the likely cause. libjpeg decodes past each, making pixels up: the missing part
of a scan that ends early is mid-grey; a block with a bad code, and often the blocks after it, are wrong."""
_PREFIX = "Corrupt JPEG data: "


def jpeg_damage(data: bytes) -> str | None:
    """What libjpeg finds wrong with the JPEG ``data``'s image data, or ``None`` when it finds nothing that
    :data:`DAMAGE` names.

    ``None`` also when libjpeg stops for any other reason (a warning that is not damage, an error, a header it
    cannot read): such a JPEG is left to Pillow, which decodes or refuses it as before. A JPEG that ends without its
    end marker is Pillow's to refuse too (libjpeg warns "Premature end of JPEG file").

    Returns:
        libjpeg's message without its prefix and the likely cause, e.g. ``"premature end of data segment (a frame
        cut short and closed?)"``.

    Raises:
        ModuleNotFoundError: ``simplejpeg`` is not installed (it comes with the ``server`` extra).
    """
    import simplejpeg  # the server extra's: imported here, so that a client-only install never needs it

    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", min_height=1, min_width=1, strict=True)  # at 1/8 scale
    except ValueError as error:  # strict: libjpeg's first warning (or its error), as libjpeg words it
        message = str(error)
        if message.startswith(_PREFIX):
            found = message.removeprefix(_PREFIX)
            for part, cause in DAMAGE:
                if part in found:
                    return f"{found} ({cause})"
    return None
