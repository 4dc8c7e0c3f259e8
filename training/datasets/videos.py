"""Folders of video files (decoded with PyAV, falling back to decord: :mod:`training.datasets.decoding`), with
optional per-frame PNG masks.

Layout: ``<dir>/<stem>.mp4`` (or any suffix of :data:`VIDEO_SUFFIXES`: ``.m4v``, ``.mov``, ``.mkv``, ``.webm``,
``.avi``, MPEG program and transport streams, ``.3gp``, ...; not recursive; hidden files, whose names start with
``.``, are ignored). Masks, when present, live in a sibling folder named after the video's stem, one PNG
per frame numbered from 0 with five digits, in the DAVIS mask conventions (palette ids or binary grayscale):
``<dir>/<stem>/00000.png``, ``00001.png``, ... A video without such a folder, or whose folder holds no PNG (frames
dumped there as JPEG, say), is unlabelled (``masks=None``). A folder may hold the masks of some frames only (sparse
annotation, as YouTube-VOS annotates every 5th frame): the other frames get masks of void (``-1``, which no metric
scores), so evaluation scores the annotated frames only. Mask files are found whatever the case of their
extension (``00000.PNG``). Both splits see every video; train clips carry no masks (training reads only frames), val
clips carry them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from plugins.video_files import VIDEO_SUFFIXES, ends_early, frame_span, recorded_end_s
from training.config import MIN_TRANSITION_CLIP
from training.datasets.clips import VideoClip
from training.datasets.decoding import Backend, DecodedClip, WindowChooser, decode_video, frame_count
from training.datasets.errors import DatasetError
from training.datasets.images import VOID_LABEL, check_same_size, is_visible, mask_files, read_mask
from training.datasets.transforms import Split, choose_window, first_window, frames_to_tensor, masks_to_tensor


def mask_path(video: Path, index: int) -> Path:
    """Where the mask of frame ``index`` of ``video`` lives, named with a lowercase ``.png`` (a mask file named
    ``.PNG`` is found too: :func:`read_video_masks`)."""
    return video.parent / video.stem / f"{index:05d}.png"


def masks_folder(video: Path) -> Path | None:
    """The folder of ``video``'s masks: its ``<stem>/`` sibling when that holds at least one visible PNG (of any
    case: ``.png``, ``.PNG``), else ``None`` (no folder, or one without masks, such as frames dumped there as JPEG:
    the video is unlabelled)."""
    folder = video.parent / video.stem
    if not folder.is_dir():
        return None
    return folder if any(is_visible(p) and p.suffix.lower() == ".png" for p in folder.iterdir()) else None


def _listed(items: list[str], limit: int = 10) -> str:
    """The first ``limit`` items joined by commas, with `` ...`` when some were left off."""
    return ", ".join(items[:limit]) + (" ..." if len(items) > limit else "")


def check_training_files(root: Path, files: list[Path], clip_length: int | None, backend: Backend) -> None:
    """Checks from their headers that training can use every file, without decoding them.

    Training draws files at random, so a file it cannot open, one cut short (its frames end before the end its
    header records: :func:`training.datasets.decoding.frame_count`; for an MP4/MOV whose index lists frames past
    the file's end, :func:`indexed_end_missing`), or one shorter than a clip, would otherwise
    stop a run at an arbitrary step, or train on part of a file, and a resumed run at the same step again (its clips
    depend only on the seed and the step). A file whose header does not record its length passes (decoding it is
    the authority).

    Raises:
        DatasetError: Naming ``root`` and listing the files no backend can open or that are cut short (with the
            first one's error), else the files shorter than ``clip_length`` (with their frame counts).
    """
    counts: dict[Path, int | None] = {}
    unreadable: list[tuple[Path, str]] = []
    for path in files:
        try:
            counts[path] = frame_count(path, backend)
            if backend != "decord" and (cut := indexed_end_missing(path)) is not None:
                raise DatasetError(cut)
        except DatasetError as err:
            unreadable.append((path, str(err)))
    if unreadable:
        raise DatasetError(
            f"{root}: {len(unreadable)} video file(s) cannot be read: {_listed([p.name for p, _ in unreadable])}; "
            f"remove or re-encode them (first error: {unreadable[0][1]})"
        )
    if clip_length is None:
        return
    short = {path: count for path, count in counts.items() if count is not None and count < clip_length}
    if short:
        listed = _listed([f"{path.name} ({count})" for path, count in short.items()])
        raise DatasetError(
            f"{root}: {len(short)} video(s) have fewer frames than clip_length={clip_length}: {listed}; "
            f"{_short_video_remedy(root, min(short.values()))}"
        )


def _short_video_remedy(root: Path, shortest: int) -> str:
    """What to do about videos shorter than a training clip, the shortest of ``shortest`` frames: remove them,
    or train on shorter clips only when those still have :data:`MIN_TRANSITION_CLIP` frames."""
    remove = f"remove them from {root} (or move them to a folder of their own)"
    learns = f"the model's transition learns only from clips of {MIN_TRANSITION_CLIP} frames or more"
    if shortest < MIN_TRANSITION_CLIP:
        return f"{remove}; shorter clips are no way round them: {learns}"
    least = MIN_TRANSITION_CLIP
    lengths = f"{shortest}" if shortest == least else f"{shortest} or less, down to {least}"
    return f"{remove}, or train on shorter clips (--clip-length {lengths}: {learns})"


def indexed_end_missing(path: Path) -> str | None:
    """Why an MP4/MOV file is cut short although its header counts every frame, or None (also for any other
    container, a file without a recorded duration, or when PyAV is missing or fails: decoding decides).

    An MP4 whose index comes before its media data (a "fast start" file, as downloads are) records each frame's
    place in the file, so a copy cut short still opens with the full count, and only decoding the frames past the
    cut fails: mid-run, at the same step on every resume. Reading the last keyframe's group of frames, where the
    index places it (one seek), tells without decoding: no frame's data is there (the cut is before it), one is
    cut off (FFmpeg marks a packet read short as corrupt), or they end early
    (:func:`plugins.video_files.ends_early`).
    """
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path)) as container:
            if "mov" not in container.format.name.split(",") or not container.streams.video:
                return None
            stream = container.streams.video[0]
            end_s = recorded_end_s(container, stream)
            if not stream.duration or end_s is None:
                return None
            container.seek((stream.start_time or 0) + stream.duration, stream=stream, backward=True, any_frame=False)
            packets = [p for p in container.demux(stream) if p.size > 0]
            spans = [span for p in packets if (span := frame_span(p.pts, p.duration, stream)) is not None]
    except Exception:  # av.error.* for a file PyAV cannot seek in or demux: decoding is the authority
        return None
    cut = f"it is cut short (an interrupted copy or download?): its index lists frames up to {float(end_s):.3f} s"
    if not packets:
        return f"{path}: {cut}, and the data of its last keyframe lies past the end of the file"
    if any(p.is_corrupt for p in packets):
        return f"{path}: {cut}, and the file ends inside the data of one of its last frames"
    early = ends_early(path, len(packets), max(spans, key=lambda span: span.end_s, default=None), end_s)
    return None if early is None else str(early)


def check_mask_names(folder: Path, video: Path, num_frames: int) -> dict[str, Path]:
    """Checks that every PNG in a video's masks folder is the mask of one of its ``num_frames`` frames
    (``00000.png`` to the last frame's number, any case of ``.png``); hidden files are ignored.

    Returns:
        The masks by stem (``"00000"``), as :func:`training.datasets.images.mask_files` finds them.

    Raises:
        DatasetError: Naming ``folder``, its number of masks, the video's number of frames and the masks that match
            no frame; or two mask files for one frame (``00000.png`` and ``00000.PNG``).
    """
    masks = mask_files(folder)  # stem -> mask file
    expected = {mask_path(video, t).stem for t in range(num_frames)}
    strays = sorted(path.name for stem, path in masks.items() if stem not in expected)
    if strays:
        raise DatasetError(
            f"{folder}: {len(masks)} masks for the {num_frames} frames of {video.name}; masks without a frame: "
            f"{_listed(strays, 5)}"
        )
    return masks


def read_video_masks(
    video: Path, decoded: DecodedClip, image_size: tuple[int, int], center_crop: bool
) -> torch.Tensor:
    """Reads the masks of the decoded frames of ``video`` as int64 [T, h, w] ids, like ``masks_to_tensor``; a frame
    without a mask file (sparse annotation) gets a mask of void (``VOID_LABEL``), which no metric scores.

    Raises:
        DatasetError: A mask file that matches no frame of the video, or a frame's mask that is unreadable or of
            another size than the frame (the message names the file and says the folder was taken for masks).
    """
    folder = video.parent / video.stem
    masks = check_mask_names(folder, video, decoded.num_frames)  # stem -> mask file
    mask_list = []
    for t in decoded.indices:
        path = masks.get(mask_path(video, t).stem)
        if path is None:  # not annotated: every pixel void
            mask_list.append(np.full(decoded.frames.shape[1:3], VOID_LABEL, dtype=np.int16))  # [H, W]
            continue
        try:
            mask = read_mask(path)  # [H, W]
            check_same_size(mask, decoded.frames.shape[1:], path, f"{video} frame {t}")
        except DatasetError as error:  # frames dumped as PNG into a folder named after the video, say
            raise DatasetError(
                f"{error}; {_taken_for_masks(folder, video)}; if they are not masks, move them out to leave the "
                "video unlabelled"
            ) from error
        mask_list.append(mask)
    return masks_to_tensor(mask_list, image_size, center_crop)  # T x [H, W] -> [T, h, w]


def _taken_for_masks(folder: Path, video: Path) -> str:
    """Why ``folder`` was read as ``video``'s masks, for the messages about them."""
    return (
        f"{folder} holds PNG files, so it was taken for the masks of {video.name}, one per annotated frame "
        f"({mask_path(video, 0).name}, {mask_path(video, 1).name}, ...): it is named after the video and sits next "
        "to it"
    )


def annotated_frame_indices(video: Path, num_frames: int) -> frozenset[int]:
    """The frames of ``video``, of ``num_frames`` frames, that its masks folder holds a mask of (empty without
    one); masks matching no frame are left out here (loading refuses them: :func:`check_mask_names`).

    Raises:
        DatasetError: two mask files for one frame (``00000.png`` and ``00000.PNG``).
    """
    stems = mask_files(video.parent / video.stem)  # stem -> mask file
    return frozenset(t for t in range(num_frames) if mask_path(video, t).stem in stems)


class VideoFolderDataset(Dataset[VideoClip]):
    """Clips from the video files in a folder; one item per file.

    Args:
        root: Folder of video files (see the module docstring).
        split: ``"train"`` samples a random window per item and reads no masks, ``"val"`` takes the first frames
            and their masks.
        clip_length: Frames per clip; None for whole videos.
        image_size: Output (height, width).
        center_crop: Centre-crop to the aspect ratio of ``image_size`` before resizing.
        backend: ``"auto"`` (PyAV; decord when PyAV is missing or fails on a file it can open), ``"pyav"`` or
            ``"decord"`` (decord's random access is not exact on every file: :mod:`training.datasets.decoding`).

    Raises:
        DatasetError: At construction when the folder is missing or holds no video, or (train split) when a video
            file cannot be opened, is cut short or its header says it is shorter than ``clip_length``; when loading,
            for an undecodable or cut-short file or a video shorter than ``clip_length``, and (val split) for a
            mask without a frame, two mask files for one frame or a mask/frame size mismatch.

    Example:
        >>> dataset = VideoFolderDataset(Path("clips/"), "train", 6, (64, 64))  # doctest: +SKIP
        >>> dataset[0].frames.shape  # doctest: +SKIP
        torch.Size([6, 3, 64, 64])
    """

    def __init__(
        self,
        root: Path,
        split: Split,
        clip_length: int | None,
        image_size: tuple[int, int],
        center_crop: bool = True,
        backend: Backend = "auto",
    ) -> None:
        root = Path(root)
        if root.is_file():
            raise DatasetError(
                f"{root}: is a file, not a folder: videos: names the folder that holds the videos "
                f"(videos:{root.parent})"
            )
        if not root.is_dir():
            raise DatasetError(f"{root}: video folder does not exist")
        self.files = sorted(
            p for p in root.iterdir() if p.is_file() and is_visible(p) and p.suffix.lower() in VIDEO_SUFFIXES
        )
        if not self.files:
            below = sorted(
                p.name
                for p in root.iterdir()
                if p.is_dir() and is_visible(p) and any(f.suffix.lower() in VIDEO_SUFFIXES for f in p.iterdir())
            )
            where = f" (subfolders are not searched: {_listed(below)} hold videos)" if below else ""
            raise DatasetError(f"{root}: no video files ({', '.join(VIDEO_SUFFIXES)}) directly in this folder{where}")
        self.split = split
        self.clip_length = clip_length
        self.image_size = image_size
        self.center_crop = center_crop
        self.backend: Backend = backend
        if split == "train":
            check_training_files(root, self.files, clip_length, backend)

    def __len__(self) -> int:
        return len(self.files)

    def has_masks(self, index: int) -> bool:
        """Whether item ``index`` comes with masks, of every frame or of some (its ``<stem>/`` folder holds a
        visible PNG: :func:`masks_folder`); nothing is decoded. Train clips carry no masks whatever this says."""
        return masks_folder(self.files[index]) is not None

    def annotated_frames(self, index: int) -> tuple[frozenset[int], int] | None:
        """The frames of item ``index`` that have a mask (indices from 0) and its number of frames, from its masks
        folder and the file's header (:func:`~training.datasets.decoding.frame_count`; nothing is decoded); None
        when the video is unlabelled or its header gives no frame count.

        Raises:
            DatasetError: the file cannot be opened or is cut short, or two mask files are there for one frame.
        """
        path = self.files[index]
        if masks_folder(path) is None:
            return None
        count = frame_count(path, self.backend)
        return None if count is None else (annotated_frame_indices(path, count), count)

    def __getitem__(self, index: int) -> VideoClip:
        """The clip of file ``index`` (a window chosen by split and ``clip_length``: :func:`choose_window`), with its
        masks outside the train split when the video has them."""
        path = self.files[index]
        return self._clip(index, lambda n: choose_window(n, self.clip_length, self.split, str(path)))

    def first_frames(self, index: int, count: int) -> VideoClip:
        """File ``index`` cut to its first ``count`` frames (the whole video when shorter), whatever
        ``clip_length`` is: like ``__getitem__``, decoding only those frames and reading only their masks.

        Raises:
            ValueError: ``count`` is below 1.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        path = self.files[index]
        return self._clip(index, lambda n: first_window(n, count, str(path)))

    def _clip(self, index: int, choose: WindowChooser) -> VideoClip:
        """The frames ``choose`` picks from file ``index``'s frame count, with their masks outside the train split
        when the video has them (void on the frames without a mask file)."""
        path = self.files[index]
        decoded = decode_video(path, choose, self.backend)
        masks = None
        if self.split != "train" and self.has_masks(index):
            masks = read_video_masks(path, decoded, self.image_size, self.center_crop)  # [T, h, w]
        frames = frames_to_tensor(decoded.frames, self.image_size, self.center_crop)  # [T, 3, h, w]
        return VideoClip(frames=frames, masks=masks, name=path.stem, start=decoded.indices[0])
