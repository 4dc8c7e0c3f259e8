"""DAVIS-layout frame folders (DAVIS 2016 binary masks, DAVIS 2017 palette masks, or frames only).

Layout: ``<root>/JPEGImages/<res>/<seq>/<stem>.jpg`` and optionally ``<root>/Annotations/<res>/<seq>/<stem>.png``
with a mask per frame, or per annotated frame. ``root`` may also be the folder containing ``DAVIS/``. ``<res>`` is
any resolution folder (``480p``, ``Full-Resolution``, ``64p``, ...): ``480p`` when present, else the first in sorted
order; masks must be at that resolution too. Sequences come from ``ImageSets`` when a list for the split exists
(``ImageSets/2017/<split>.txt``, ``ImageSets/2016/...``, ``ImageSets/<res>/...`` or ``ImageSets/<split>.txt``; lines
are sequence names or DAVIS 2016-style frame paths). A split without a list holds the sequences the other split's
list leaves out, and every sequence when neither has one; training refuses two lists that share a sequence, as that
sequence would be trained on and evaluated as held out. Frame files are
named ``<prefix><number>`` with one prefix per sequence (``00000.jpg``, ``frame_7.png``, ...) and read in the order
of their numbers; hidden files and folders (names starting with ``.``, such as macOS's ``._00000.jpg``) are
ignored. A sequence without annotations (no ``Annotations/<res>/<seq>/`` folder, or one without PNG files) or
annotated on its first frame only is unlabelled. One annotated on some of its frames but not all (YouTube-VOS
annotates every 5th frame) is sparsely annotated: its other frames get masks of void (``-1``, which no metric
scores), so evaluation scores the annotated frames only. Mask files are found whatever the case of their extension
(``00000.PNG``). Train clips carry no masks (training reads only frames); val clips carry them, and the synthetic
metadata ``<root>/metadata/<seq>.json`` when the folder was written by ``python -m training.datasets generate`` and
is read at the size it was written at (the metadata's pixel positions, boxes and areas describe that grid; read at
another size the clips carry no metadata, and a warning says so once per dataset).
"""

from __future__ import annotations

import itertools
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from training.datasets.clips import VideoClip
from training.datasets.errors import DatasetError
from training.datasets.images import VOID_LABEL, check_same_size, is_visible, mask_files, read_frame, read_mask
from training.datasets.synthetic.metadata import VideoMetadata
from training.datasets.transforms import (
    Split,
    choose_window,
    clip_length_setting,
    first_window,
    frames_to_tensor,
    masks_to_tensor,
    shorter_clips_hint,
)

_FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
_NUMBERED = re.compile(r"(?P<prefix>.*?)(?P<number>\d+)")
"""A frame file's stem: any prefix, then the frame number."""


@dataclass(frozen=True)
class DavisSequence:
    """One DAVIS sequence on disk.

    Attributes:
        name: Sequence folder name.
        frames: Frame files in order.
        masks: The mask files in frame order (same stems as their frames): one per frame, or those of the annotated
            frames of a sparsely annotated sequence; None when the dataset has no annotations, the sequence none
            (no annotation folder, or one without PNG files) or only its first frame's (the semi-supervised
            convention of DAVIS test-dev).
    """

    name: str
    frames: tuple[Path, ...]
    masks: tuple[Path, ...] | None

    def frame_masks(self) -> tuple[Path | None, ...] | None:
        """The mask file of each frame, None for a frame without one (sparse annotation); None when the sequence
        is unlabelled."""
        if self.masks is None:
            return None
        by_stem = {mask.stem: mask for mask in self.masks}
        return tuple(by_stem.get(frame.stem) for frame in self.frames)


def resolve_root(root: Path) -> Path:
    """Returns the folder holding ``JPEGImages/``: ``root`` itself or ``root/DAVIS``.

    Raises:
        DatasetError: ``root`` is not an existing folder, or neither it nor ``root/DAVIS`` holds ``JPEGImages/``.
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: folder does not exist" if not root.exists() else f"{root}: not a folder")
    for candidate in (root, root / "DAVIS"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise DatasetError(f"{root}: no JPEGImages/ folder here or in {root / 'DAVIS'} (expected the DAVIS layout)")


def _resolution(images: Path) -> str:
    """The resolution folder of ``images`` (``JPEGImages/``) to read: ``480p`` when present, else the first in
    sorted order.

    Raises:
        DatasetError: ``images`` holds no folder, or the chosen one holds frame images itself: sequence folders
            straight in ``JPEGImages/`` (the YouTube-VOS layout, ``JPEGImages/<seq>/00000.jpg``), where DAVIS has a
            resolution folder between (``JPEGImages/<res>/<seq>/``); the message says so.
    """
    choices = sorted(p.name for p in images.iterdir() if p.is_dir() and is_visible(p))
    if not choices:
        raise DatasetError(f"{images}: empty folder, expected resolution folders such as 480p/")
    res = "480p" if "480p" in choices else choices[0]
    if any(is_visible(p) and p.suffix.lower() in _FRAME_SUFFIXES and p.is_file() for p in (images / res).iterdir()):
        raise DatasetError(
            f"{images / res}: holds frame images, so JPEGImages/<seq>/ was found where JPEGImages/<res>/<seq>/ is "
            f"expected (the DAVIS layout has a resolution folder such as 480p/ between them); move the sequence "
            f"folders into {images / '480p'} (and those of Annotations/ into Annotations/480p/)"
        )
    return res


def _split_names(root: Path, res: str, split: Split) -> list[str] | None:
    for rel in (f"2017/{split}.txt", f"2016/{split}.txt", f"{res}/{split}.txt", f"{split}.txt"):
        path = root / "ImageSets" / rel
        if path.is_file():
            names = []
            for line in path.read_text().splitlines():
                token = line.split()[0] if line.strip() else ""
                name = Path(token).parent.name if "/" in token else token
                if name and name not in names:
                    names.append(name)
            if not names:
                raise DatasetError(f"{path}: lists no sequences for the {split} split")
            return names
    return None


def has_split_lists(root: Path) -> bool:
    """Whether the DAVIS-layout folder ``root`` has an ``ImageSets`` list for either split, so that its val split
    holds only sequences its train split does not (:func:`_split_sequences`); without one both hold every sequence.

    Raises:
        DatasetError: ``root`` is not a DAVIS-layout folder (:func:`resolve_root`, :func:`_resolution`).
    """
    folder = resolve_root(root)
    res = _resolution(folder / "JPEGImages")
    return any(_split_names(folder, res, split) is not None for split in ("train", "val"))


def _split_sequences(root: Path, res: str, split: Split, image_dir: Path) -> list[str]:
    """The sequences of ``split``: its ``ImageSets`` list; without one, the folders of ``image_dir`` the other
    split's list leaves out (all of them when it has none either).

    Raises:
        DatasetError: for the train split, both splits have a list and the lists share a sequence (a run would train
            on it and evaluate it as held out; the val split alone, which the evaluation tools read, is not refused).
    """
    other: Split = "val" if split == "train" else "train"
    wanted, listed_elsewhere = _split_names(root, res, split), _split_names(root, res, other)
    if split == "train" and wanted is not None and listed_elsewhere is not None:
        shared = [name for name in wanted if name in listed_elsewhere]
        if shared:
            raise DatasetError(
                f"{root / 'ImageSets'}: the train and val lists share {len(shared)} sequence(s) "
                f"({', '.join(shared[:5])}{', ...' if len(shared) > 5 else ''}), which would be trained on and "
                "evaluated as held out; list each sequence in one split"
            )
    if wanted is not None:
        return wanted
    folders = sorted(p.name for p in image_dir.iterdir() if p.is_dir() and is_visible(p))
    return folders if listed_elsewhere is None else [name for name in folders if name not in listed_elsewhere]


def scan_sequences(root: Path, split: Split) -> tuple[Path, str, list[DavisSequence]]:
    """Finds the sequences of a DAVIS-layout dataset and their masks (a sequence without annotations, or annotated
    on its first frame only, counts as unlabelled: training reads its frames, evaluation leaves it out; one
    annotated on some of its frames is scored on those: see :func:`sequence_masks`).

    Returns:
        The resolved root, the resolution folder name and the sequences in name order.

    Raises:
        DatasetError: For a missing or empty folder, a sequence without frames or with badly numbered ones (see
            ``_numbered_frames``), a mask without its frame, two mask files for one frame, or masks only at another
            resolution than the frames.
    """
    root = resolve_root(root)
    res = _resolution(root / "JPEGImages")
    image_dir = root / "JPEGImages" / res
    annotation_dir = _annotation_dir(root, res)
    names = _split_sequences(root, res, split, image_dir)
    if not names:
        raise DatasetError(f"{image_dir}: empty folder, no sequences found")
    sequences = []
    for name in names:
        folder = image_dir / name
        if not folder.is_dir():
            raise DatasetError(f"{folder}: sequence listed in ImageSets is missing")
        frames = _numbered_frames(folder)
        masks = None if annotation_dir is None else sequence_masks(annotation_dir / name, frames)
        sequences.append(DavisSequence(name, frames, masks))
    return root, res, sequences


def sequence_masks(annotations: Path, frames: tuple[Path, ...]) -> tuple[Path, ...] | None:
    """The mask files of a sequence's ``frames`` in its annotation folder ``annotations``
    (``Annotations/<res>/<seq>/``, same stems as the frames, any case of ``.png``: :func:`mask_files`), in frame
    order; None when the sequence is unlabelled: the folder is missing or holds no PNG file, or it holds only the
    first frame's mask of several (the first-frame annotation of semi-supervised sets such as DAVIS test-dev). Any
    other set of masks is the sequence's annotation: of every frame, or of some (sparse annotation, as YouTube-VOS
    annotates every 5th frame), whose other frames are not scored (:meth:`DavisSequence.frame_masks`).

    Raises:
        DatasetError: a mask without its frame (naming the folder and the masks), or two mask files for one frame.
    """
    found = mask_files(annotations)  # stem -> mask file
    if not found:
        return None  # no annotations for this sequence: frames only
    stems = {frame.stem for frame in frames}
    strays = sorted(path.name for stem, path in found.items() if stem not in stems)
    if strays:
        raise DatasetError(f"{annotations}: masks without a frame in {frames[0].parent}: {', '.join(strays[:5])}")
    if set(found) == {frames[0].stem} and len(frames) > 1:
        return None  # first-frame annotation: frames only
    return tuple(found[frame.stem] for frame in frames if frame.stem in found)


def _annotation_dir(root: Path, res: str) -> Path | None:
    """``Annotations/<res>/``, or None when the dataset has no annotations (no ``Annotations/`` folder, or one
    without resolution folders).

    Raises:
        DatasetError: If ``Annotations/`` holds only other resolutions than the frames' (its masks would not match
            the frames, and every sequence would silently count as unlabelled); the message names both.
    """
    annotations = root / "Annotations"
    if (annotations / res).is_dir():
        return annotations / res
    others = (
        sorted(p.name for p in annotations.iterdir() if p.is_dir() and is_visible(p)) if annotations.is_dir() else []
    )
    if others:
        raise DatasetError(
            f"{annotations}: masks for resolution {', '.join(f'{o}/' for o in others)} only, but the frames are read "
            f"from {root / 'JPEGImages' / res}; masks must be at the frames' resolution: add {annotations / res}, "
            "or remove Annotations/ to use the frames only"
        )
    return None


def _numbered_frames(folder: Path) -> tuple[Path, ...]:
    """The frame images of a sequence in frame order: by the number that ends each name, so ``frame_2`` comes
    before ``frame_10``. Hidden files (names starting with ``.``) are ignored.

    Raises:
        DatasetError: No frames; names that do not follow one pattern ``<prefix><number>`` (the message names the
            folder and the names that differ); two files with one number (``00003.jpg`` and ``00003.png``: the
            message names the second); or a gap in the numbering (a missing frame would join two moments of the
            video as if they were consecutive; the message names the first missing file).
    """
    frames = [p for p in folder.iterdir() if is_visible(p) and p.suffix.lower() in _FRAME_SUFFIXES]
    if not frames:
        raise DatasetError(f"{folder}: empty folder, no frame images ({', '.join(_FRAME_SUFFIXES)})")
    digits = _frame_digits(folder, frames)
    frames.sort(key=lambda frame: (int(digits[frame]), frame.name))
    for before, after in itertools.pairwise(frames):
        number = int(digits[before])
        if int(digits[after]) == number:
            raise DatasetError(f"{after}: a second file for frame {before.name}; keep one of the two")
        if int(digits[after]) != number + 1:
            prefix = before.stem[: -len(digits[before])]
            missing = before.with_name(f"{prefix}{number + 1:0{len(digits[before])}d}{before.suffix}")
            raise DatasetError(f"{missing}: frame is missing (the sequence jumps from {before.name} to {after.name})")
    return tuple(frames)


def _frame_digits(folder: Path, frames: list[Path]) -> dict[Path, str]:
    """The digits that end each frame file's stem (``"00007"`` for ``frame_00007.jpg``).

    Raises:
        DatasetError: Naming ``folder``, if a stem does not end in a number or the stems have different prefixes.
    """
    digits: dict[Path, str] = {}
    prefixes: dict[str, str] = {}  # prefix -> the first file name with it
    unnumbered = []
    for frame in sorted(frames):
        match = _NUMBERED.fullmatch(frame.stem)
        if match is None:
            unnumbered.append(frame.name)
            continue
        digits[frame] = match["number"]
        prefixes.setdefault(match["prefix"], frame.name)
    if unnumbered:
        raise DatasetError(
            f"{folder}: frame names must end in the frame number (00000.jpg, frame_7.png, ...), but "
            f"{', '.join(unnumbered[:5])}{' ...' if len(unnumbered) > 5 else ''} do not"
        )
    if len(prefixes) > 1:
        raise DatasetError(
            f"{folder}: frame names do not follow one pattern <prefix><number>: {len(prefixes)} different "
            f"prefixes, e.g. {', '.join(sorted(prefixes.values())[:5])}"
        )
    return digits


class DavisDataset(Dataset[VideoClip]):
    """Clips from a DAVIS-layout dataset; one item per sequence.

    Args:
        root: Dataset folder (see the module docstring).
        split: ``"train"`` samples a random window per item and reads no masks, ``"val"`` takes the first frames
            and their masks.
        clip_length: Frames per clip; None for whole sequences.
        image_size: Output (height, width).
        center_crop: Centre-crop to the aspect ratio of ``image_size`` before resizing (no stretching).

    Val clips of a generated dataset carry its synthetic metadata only when ``image_size`` is the size the metadata
    describes (what ``generate --size`` wrote): resized or cropped clips would pair the masks with pixel positions,
    boxes and areas of another grid, so they carry none, and the first such clip warns (``UserWarning``).

    Raises:
        DatasetError: At construction for layout problems (see ``scan_sequences``) or sequences shorter than
            ``clip_length``; when loading, for unreadable images and (val split) a mask whose size differs from
            its frame.

    Example:
        >>> dataset = DavisDataset(Path("/data/DAVIS"), "val", None, (64, 64))  # doctest: +SKIP
        >>> clip = dataset[0]  # doctest: +SKIP
    """

    def __init__(
        self, root: Path, split: Split, clip_length: int | None, image_size: tuple[int, int], center_crop: bool = True
    ) -> None:
        self.root, self.resolution, self.sequences = scan_sequences(Path(root), split)
        for seq in self.sequences:
            if clip_length is not None and clip_length > len(seq.frames):
                folder = seq.frames[0].parent
                wanted = clip_length_setting(split, clip_length)
                hint = shorter_clips_hint(split, len(seq.frames))
                raise DatasetError(f"{folder}: {len(seq.frames)} frames, fewer than {wanted}; {hint}")
        self.split = split
        self.clip_length = clip_length
        self.image_size = image_size
        self.center_crop = center_crop
        self._warned_metadata_size = False

    def __len__(self) -> int:
        return len(self.sequences)

    def has_masks(self, index: int) -> bool:
        """Whether sequence ``index`` is annotated, on every frame or on some (not read from disk). Train clips
        carry no masks whatever this says."""
        return self.sequences[index].masks is not None

    def annotated_frames(self, index: int) -> tuple[frozenset[int], int] | None:
        """The frames of sequence ``index`` that have a mask (indices from 0) and its number of frames; None when
        it is unlabelled. Nothing is read from disk."""
        masks = self.sequences[index].frame_masks()
        if masks is None:
            return None
        return frozenset(t for t, mask in enumerate(masks) if mask is not None), len(masks)

    def __getitem__(self, index: int) -> VideoClip:
        """The clip of sequence ``index``: frames ``[T, 3, h, w]``, and masks ``[T, h, w]`` outside the train split
        when the sequence is annotated (void, ``-1``, on the frames a sparsely annotated sequence has no mask of).

        Raises:
            DatasetError: a frame of the clip differs in size from its first frame.
        """
        seq = self.sequences[index]
        return self._clip(seq, choose_window(len(seq.frames), self.clip_length, self.split, str(seq.frames[0].parent)))

    def first_frames(self, index: int, count: int) -> VideoClip:
        """Sequence ``index`` cut to its first ``count`` frames (the whole sequence when shorter), whatever
        ``clip_length`` is: like ``__getitem__``, reading only those frames and their masks.

        Raises:
            ValueError: ``count`` is below 1.
            DatasetError: a frame of the clip differs in size from its first frame.
        """
        seq = self.sequences[index]
        return self._clip(seq, first_window(len(seq.frames), count, str(seq.frames[0].parent)))

    def _clip(self, seq: DavisSequence, window: range) -> VideoClip:
        """The frames of ``window`` of ``seq``, with their masks outside the train split when it is annotated: a
        frame without a mask file (sparse annotation) gets a mask of void (``VOID_LABEL``), which no metric scores."""
        frames = [read_frame(seq.frames[t]) for t in window]  # each [H, W, 3]
        for t, frame in zip(window, frames, strict=True):
            if frame.shape != frames[0].shape:
                raise DatasetError(f"{seq.frames[t]}: frame size differs from {seq.frames[window[0]]}")
        masks = None
        frame_masks = seq.frame_masks()
        if self.split != "train" and frame_masks is not None:
            mask_list = []
            for t in window:
                path = frame_masks[t]
                if path is None:  # not annotated: every pixel void
                    mask_list.append(np.full(frames[0].shape[:2], VOID_LABEL, dtype=np.int16))  # [H, W]
                    continue
                mask = read_mask(path)  # [H, W]
                check_same_size(mask, frames[0].shape, path, str(seq.frames[t]))
                mask_list.append(mask)
            masks = masks_to_tensor(mask_list, self.image_size, self.center_crop)  # T x [H, W] -> [T, h, w]
        video = frames_to_tensor(frames, self.image_size, self.center_crop)  # T x [H, W, 3] -> [T, 3, h, w]
        metadata = self._metadata(seq, (masks.shape[-2], masks.shape[-1])) if masks is not None else None
        return VideoClip(frames=video, masks=masks, name=seq.name, start=window[0], metadata=metadata)

    def _metadata(self, seq: DavisSequence, size: tuple[int, int]) -> VideoMetadata | None:
        """The synthetic metadata written beside a generated sequence, if any and if it describes frames of ``size``
        (the clip's (height, width)); metadata of another size is left out, with a warning the first time.

        Raises:
            DatasetError: The file cannot be read, or describes another number of frames than the sequence has.
        """
        path = self.root / "metadata" / f"{seq.name}.json"
        if not path.is_file():
            return None
        try:
            metadata = VideoMetadata.from_json(path.read_text())
        except KeyError as error:  # str(KeyError) is the bare key
            raise DatasetError(f"{path}: not readable as synthetic metadata (missing field {error})") from error
        except (OSError, ValueError, TypeError) as error:
            raise DatasetError(f"{path}: not readable as synthetic metadata ({error})") from error
        if metadata.num_frames != len(seq.frames):
            raise DatasetError(f"{path}: describes {metadata.num_frames} frames, the sequence has {len(seq.frames)}")
        if (metadata.height, metadata.width) != size:
            if not self._warned_metadata_size:
                self._warned_metadata_size = True
                warnings.warn(
                    f"{path}: synthetic metadata left out of the clips of {self.root}: it describes "
                    f"{metadata.height}x{metadata.width} frames, but clips are read at {size[0]}x{size[1]}, where its "
                    f"pixel positions, boxes and areas would not match the masks; to keep it, read the dataset at "
                    f"{metadata.height}x{metadata.width} or generate it at the size it is read at",
                    stacklevel=2,
                )
            return None
        return metadata
