"""The command-line client's overlay: GIF/MP4 writing of frames drawn by :func:`service.slot_overlay.render_overlay`
(each slot in its colour of every picture), and a worker thread that writes off the receive path."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from PIL import Image

from service.slot_overlay import render_overlay

MAX_SIDE = {"libx264": 16384, "mpeg4": 8190, "gif": 65535}
"""The widest and tallest frame each codec of :class:`OverlayWriter` encodes, in pixels (even for MPEG-4, whose
limit is 8191, as yuv420p needs even sides)."""


def letterboxed(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame`` (uint8 ``[H, W, 3]``) scaled to fit in ``size`` (height, width) with its aspect ratio kept
    (bilinear), centred on black: uint8 ``[*size, 3]``."""
    height, width = size
    scale = min(height / frame.shape[0], width / frame.shape[1])
    fitted_height = min(height, max(1, round(frame.shape[0] * scale)))
    fitted_width = min(width, max(1, round(frame.shape[1] * scale)))
    fitted = np.asarray(Image.fromarray(frame).resize((fitted_width, fitted_height), Image.Resampling.BILINEAR))
    boxed = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - fitted_height) // 2, (width - fitted_width) // 2
    boxed[top : top + fitted_height, left : left + fitted_width] = fitted
    return boxed


class OverlayWriter:
    """Writes frames to ``path`` as they come: ``.gif`` or ``.mp4`` (PyAV; H.264, or MPEG-4 without libx264).

    Each frame is encoded and written when it arrives, so memory stays flat however long the stream runs
    (a camera left running for an hour included). GIF frames are quantised to 128 colours of their own.

    Args:
        path: output file.
        fps: playback rate.
        what: what the file is, for the error message.

    Attributes:
        frames: frames written so far (the file exists once one is).

    Raises:
        ValueError: ``path`` is neither ``.gif`` nor ``.mp4``.
    """

    def __init__(self, path: Path, fps: float, what: str = "overlay") -> None:
        self.path = path
        self.fps = fps
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None  # the first frame's (H, W): every frame is brought to it
        self._failed = False  # a write raised: the container is past saving (and flushing into it crashes PyAV)
        self._gif = path.suffix.lower() == ".gif"
        self._what = what
        self.frames = 0
        if path.suffix.lower() not in (".gif", ".mp4"):
            raise ValueError(f"{path}: the {what} must be a .gif or .mp4 file")

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 ``[H, W, 3]`` frame; a frame of another size than the first is scaled to fit in it,
        keeping its aspect ratio, and centred on black bars (a folder of images may mix sizes and orientations, a
        video file may not).

        Raises:
            ValueError: the first frame is larger than the codec encodes (:data:`MAX_SIDE`; nothing is written).
            OSError: the file cannot be written, or FFmpeg cannot encode the frame (naming the file).
        """
        import av

        if self._size is None:
            self._size = (frame.shape[0], frame.shape[1])
        elif frame.shape[:2] != self._size:
            frame = letterboxed(frame, self._size)
        if not self._gif:
            # yuv420p needs even sizes: repeat the last row / column rather than lose the frame's edge
            frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
        if self._failed:
            raise OSError(f"{self.path}: an earlier frame could not be written")
        try:
            if self._container is None:
                codec = self._codec()
                self._check_size(codec, frame.shape[0], frame.shape[1])
                self._container = av.open(str(self.path), mode="w")
                self._stream = self._container.add_stream(codec, rate=max(1, round(self.fps)))
                self._stream.height, self._stream.width = frame.shape[:2]
                self._stream.pix_fmt = "pal8" if self._gif else "yuv420p"
            video_frame = _paletted_frame(frame) if self._gif else av.VideoFrame.from_ndarray(frame, format="rgb24")
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
        except OSError as error:
            self._failed = True
            if error.filename is not None:
                raise
            raise OSError(error.errno, error.strerror or str(error), str(self.path)) from error
        except av.error.FFmpegError as error:  # an encoder's refusal (ExternalError, ArgumentError): name the file
            self._failed = True
            reason = error.strerror or str(error)
            raise OSError(None, f"cannot encode the {self._what} ({reason})", str(self.path)) from error
        except Exception:  # not Ctrl-C: the container is sound then, and close() finishes the frames written
            self._failed = True
            raise
        self.frames += 1

    def check_size(self, height: int, width: int) -> None:
        """Refuse frames of ``height`` x ``width`` pixels that the codec this writer uses cannot encode, before any
        frame is made (:meth:`write` checks the first frame too).

        Raises:
            ValueError: as :meth:`write` for such a first frame (naming the file, the size and the codec's limit).
        """
        if not self._gif:  # as write pads them: yuv420p needs even sides
            height, width = height + height % 2, width + width % 2
        self._check_size(self._codec(), height, width)

    def _codec(self) -> str:
        """The codec the file is written with: ``gif``, else ``libx264`` where PyAV has it, else ``mpeg4``."""
        import av

        return "gif" if self._gif else "libx264" if "libx264" in av.codecs_available else "mpeg4"

    def _check_size(self, codec: str, height: int, width: int) -> None:
        """Refuse frames larger than ``codec`` encodes, before the file is made.

        Raises:
            ValueError: naming the file, the frame size and the codec's limit (and ``.gif`` where it fits).
        """
        if max(height, width) <= MAX_SIDE[codec]:
            return
        instead = "; write a .gif instead" if not self._gif and max(height, width) <= MAX_SIDE["gif"] else ""
        raise ValueError(
            f"{self.path}: frames of {width}x{height} pixels are too large for the {self._what} ({codec} encodes "
            f"at most {MAX_SIDE[codec]} pixels a side){instead}"
        )

    def close(self) -> None:
        """Finish the file (nothing is written when no frame came). After a failed write the file is only closed,
        as far as it goes: encoding the frames still buffered into it would crash PyAV."""
        container, self._container = self._container, None
        if container is None:
            return
        if self._failed:
            with contextlib.suppress(Exception):
                container.close()
            return
        try:
            for packet in self._stream.encode():
                container.mux(packet)
        except Exception:
            self._failed = True
            with contextlib.suppress(Exception):
                container.close()
            raise
        container.close()

    def __enter__(self) -> OverlayWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _paletted_frame(frame: np.ndarray) -> Any:
    """A ``pal8`` PyAV frame of ``frame`` quantised to 128 colours without dithering."""
    import av

    quantised = Image.fromarray(frame).quantize(colors=128, dither=Image.Dither.NONE)
    indices = np.asarray(quantised)  # [H, W] palette indices
    rgb = np.zeros((256, 3), dtype=np.uint8)
    # Pillow's flat [r0, g0, b0, r1, ...] palette [3*colours] -> [colours, 3]
    used = np.asarray(quantised.getpalette() or [], dtype=np.uint8)[: 256 * 3].reshape(-1, 3)  # [colours, 3]
    rgb[: len(used)] = used
    argb = np.concatenate([np.full((256, 1), 255, dtype=np.uint8), rgb], axis=1)  # [256, 4], what PyAV takes
    image_and_palette: Any = (indices, argb)  # PyAV's type stubs leave out pal8's documented (image, palette) form
    return av.VideoFrame.from_ndarray(image_and_palette, format="pal8")


OVERLAY_QUEUE = 16
"""Overlay frames that may wait for the worker thread that renders and writes them (queued or being written);
when it falls that far behind, the sending loop waits for it before it sends the next frame (and the stream slows to
its pace), while the receive loop keeps reading the answers."""


class OverlayWorker:
    """Renders overlay frames and writes them with ``writer`` in a worker thread, in the order given, so that the
    receive loop (and the latency it measures) never waits for them.

    :meth:`put` never waits; the back-pressure is on the sending side: :meth:`wait_for_room` returns once fewer
    than :data:`OVERLAY_QUEUE` frames wait (queued or being written), and a sender that calls it before each frame
    keeps the frames waiting below ``OVERLAY_QUEUE`` plus the frames it has in flight.

    A failure to render or write is raised by the next :meth:`put`, by :meth:`wait_for_room` (waking a sender
    waiting there) and by :meth:`close` (later frames are dropped), so it stops the run as it would if the frames
    were written in the loop.
    """

    def __init__(self, writer: OverlayWriter) -> None:
        self._writer = writer
        self._queue: asyncio.Queue[tuple[np.ndarray, np.ndarray, tuple[int, ...]] | None] = asyncio.Queue()
        self._waiting = 0  # frames queued or being written
        self._progress = asyncio.Event()  # set whenever a frame is done with, the worker fails, or it ends
        self._error: BaseException | None = None
        self._task = asyncio.ensure_future(self._run())
        self._task.add_done_callback(lambda _: self._progress.set())

    async def wait_for_room(self) -> None:
        """Return once fewer than :data:`OVERLAY_QUEUE` frames wait (at once when they do, or when the worker has
        ended).

        Raises:
            Exception: what rendering or writing an earlier frame raised (also when it fails during the wait).
        """
        while self._waiting >= OVERLAY_QUEUE and self._error is None and not self._task.done():
            self._progress.clear()
            await self._progress.wait()
        if self._error is not None:
            raise self._error

    def put(self, frame: np.ndarray, segmentation: np.ndarray, slot_ids: tuple[int, ...]) -> None:
        """Queue one frame's overlay; never waits (the sender's :meth:`wait_for_room` bounds the queue).

        Raises:
            Exception: what rendering or writing an earlier frame raised.
        """
        if self._error is not None:
            raise self._error
        self._queue.put_nowait((frame, segmentation, slot_ids))
        self._waiting += 1

    async def close(self) -> None:
        """Write the frames still queued, then finish the file; the file is finished whatever happens before
        (a failed write, a cancellation), so the frames written so far stay readable.

        Raises:
            Exception: what rendering or writing a frame, or finishing the file, raised (a failed write first).
        """
        try:
            if not self._task.done():  # a worker that has ended reads no more: nothing to wait for
                self._queue.put_nowait(None)
                await asyncio.shield(self._task)
        finally:
            try:
                await asyncio.to_thread(self._writer.close)
            except Exception:
                if self._error is None:
                    raise
        if self._error is not None:
            raise self._error

    def _write(self, frame: np.ndarray, segmentation: np.ndarray, slot_ids: tuple[int, ...]) -> None:
        self._writer.write(render_overlay(frame, segmentation, slot_ids))

    async def _run(self) -> None:
        while (item := await self._queue.get()) is not None:
            try:
                if self._error is None:  # after a failure the queue is only emptied
                    await asyncio.to_thread(self._write, *item)
            except Exception as error:
                self._error = error
            finally:
                self._waiting -= 1
                self._progress.set()
