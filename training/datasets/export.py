"""Writing synthetic videos to disk in the DAVIS 2017 layout (and optionally as mp4 files).

Layout written under ``out``, for sequence ``<seq>`` = ``<level>-<index:05d>`` and resolution folder ``<res>`` =
``<height>p`` (the DAVIS convention of naming by frame height, e.g. ``64p``):

* ``JPEGImages/<res>/<seq>/00000.jpg``: RGB frames (JPEG quality 95, no chroma subsampling),
* ``Annotations/<res>/<seq>/00000.png``: palette (``P``) PNGs whose indices are the instance ids,
* ``metadata/<seq>.json``: ``VideoMetadata.to_json()``,
* ``videos/<seq>.mp4`` (optional): H.264 4:4:4 (or MPEG-4 Part 2 at 4:2:0 when libx264 is unavailable), with a
  copy of the sequence's masks in ``videos/<seq>/00000.png``, ... so ``videos:<out>/videos`` reads them labelled.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from training.datasets.synthetic import SyntheticVideo

JPEG_QUALITY = 95


def davis_palette() -> list[int]:
    """The 256-colour palette of DAVIS/PASCAL VOC masks (index 0 black), flattened as [r0, g0, b0, r1, ...]."""
    palette = []
    for index in range(256):
        rgb = [0, 0, 0]
        code = index
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((code >> channel) & 1) << (7 - bit)
            code >>= 3
        palette.extend(rgb)
    return palette


_PALETTE = davis_palette()


def resolution_name(height: int) -> str:
    """Resolution folder name for frames of the given height, e.g. ``64p``."""
    return f"{height}p"


def write_mask_png(path: Path, ids: np.ndarray) -> None:
    """Writes uint8 [H, W] instance ids as a palette PNG."""
    image = Image.fromarray(np.ascontiguousarray(ids, dtype=np.uint8))  # mode "L", values kept as indices
    image.putpalette(_PALETTE)  # turns the image into mode "P" without touching the indices
    image.save(path, optimize=False)


def _has_libx264() -> bool:
    import av

    return "libx264" in av.codecs_available


def mp4_needs_even_size() -> bool:
    """Whether :func:`write_mp4` needs even frame sizes here: only without libx264, whose 4:2:0 fallback codec
    stores colour at half resolution.

    Raises:
        ImportError: If PyAV is not installed.
    """
    try:
        return not _has_libx264()
    except ImportError as err:
        raise ImportError("writing mp4 files needs PyAV: pip install av") from err


def _encoder_options(codec: str, pix_fmt: str) -> dict[str, object]:
    """The encoder options :func:`write_mp4` uses, chosen so the same frames always give the same bytes.

    One thread, so the output does not depend on the machine's core count; for libx264 also no macroblock-tree
    rate control (``mbtree=0``): with it, libx264 now and then encodes the same short, small videos (24 frames at
    64x64, say) to different bitstreams, in one process and with one thread alike, whose decoded pixels differ by
    up to 25 levels. Without it the files are about a quarter larger at the same CRF, and about 2 dB better.
    """
    if codec != "libx264":
        return {"threads": "1"}
    return {"crf": "10" if pix_fmt == "yuv444p" else "17", "threads": "1", "x264-params": "mbtree=0"}


def write_mp4(path: Path, frames: np.ndarray, fps: int = 12, full_chroma: bool = True) -> None:
    """Encodes uint8 [T, H, W, 3] frames as an mp4 with PyAV.

    With libx264 and ``full_chroma`` the video is H.264 4:4:4 at CRF 10, which keeps the colour of every pixel
    (42-50 dB PSNR on 64x64 synthetic videos, above the JPEG frames; 4:2:0 at CRF 17 gave 25-30 dB,
    its half-resolution colour smearing every object edge, and lower object-discovery scores); otherwise 4:2:0 (what
    cameras record), H.264 at CRF 17 or MPEG-4 Part 2 when libx264 is unavailable, which needs even sizes.
    The output is deterministic: the same frames give the same bytes (see :func:`_encoder_options`).

    Raises:
        ImportError: If PyAV is not installed.
        ValueError: For odd frame sizes at 4:2:0.
    """
    try:
        import av
    except ImportError as err:
        raise ImportError("writing mp4 files needs PyAV: pip install av") from err
    _, height, width, _ = frames.shape
    codec = "libx264" if _has_libx264() else "mpeg4"
    pix_fmt = "yuv444p" if codec == "libx264" and full_chroma else "yuv420p"
    if pix_fmt == "yuv420p" and (height % 2 or width % 2):
        raise ValueError(f"4:2:0 mp4 output needs even frame sizes, got {height}x{width}")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        if not isinstance(stream, av.VideoStream):
            raise TypeError(f"PyAV returned a {type(stream).__name__} for codec {codec}")
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = _encoder_options(codec, pix_fmt)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode(None))


DATASET_FOLDERS = ("JPEGImages", "Annotations", "metadata", "videos")
"""The folders a written dataset consists of."""


def write_sequence(out: Path, name: str, video: SyntheticVideo, mp4: bool = False) -> None:
    """Writes one video in the layout of the module docstring (creating folders as needed). The metadata comes
    first: a run stopped partway leaves folders that its metadata claims, so ``generate --overwrite`` replaces
    them as its own."""
    res = resolution_name(video.metadata.height)
    image_dir = out / "JPEGImages" / res / name
    mask_dir = out / "Annotations" / res / name
    for folder in (image_dir, mask_dir, out / "metadata"):
        folder.mkdir(parents=True, exist_ok=True)
    (out / "metadata" / f"{name}.json").write_text(video.metadata.to_json())
    for t in range(video.metadata.num_frames):
        # No chroma subsampling: at 4:2:0 (Pillow's default) the small, saturated frames lose colour at every
        # object edge (27.5-30.5 dB PSNR at quality 95 against 38-42 dB without it, measured on 64x64 videos).
        Image.fromarray(video.frames[t]).save(image_dir / f"{t:05d}.jpg", quality=JPEG_QUALITY, subsampling=0)
        write_mask_png(mask_dir / f"{t:05d}.png", video.masks[t])
    if mp4:
        write_labelled_mp4(out / "videos", name, video.frames, video.masks)


def remove_sequence(out: Path, name: str, height: int) -> None:
    """Remove what :func:`write_sequence` wrote of the video ``name`` (of frames ``height`` pixels tall) in
    ``out``, complete or not; what is not there is skipped."""
    res = resolution_name(height)
    for folder in (out / "JPEGImages" / res / name, out / "Annotations" / res / name, out / "videos" / name):
        shutil.rmtree(folder, ignore_errors=True)
    for path in (out / "metadata" / f"{name}.json", out / "videos" / f"{name}.mp4"):
        path.unlink(missing_ok=True)


def write_labelled_mp4(folder: Path, name: str, frames: np.ndarray, masks: np.ndarray) -> None:
    """Write ``folder/<name>.mp4`` and its masks beside it, ``folder/<name>/00000.png`` ..., where a ``videos:``
    spec reads them (creating the folders as needed).

    Args:
        folder: the ``videos:`` folder.
        name: the video's name.
        frames: uint8 ``[T, H, W, 3]``.
        masks: ``[T, H, W]`` instance ids (0 = background).
    """
    beside_video = folder / name  # where the videos: reader looks for a video's masks
    beside_video.mkdir(parents=True, exist_ok=True)
    write_mp4(folder / f"{name}.mp4", frames)
    for t, ids in enumerate(masks):
        write_mask_png(beside_video / f"{t:05d}.png", ids)
