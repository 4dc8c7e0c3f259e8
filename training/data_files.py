"""The run folder's record of the local data files a run reads (``data_files.json``): building it from the data
folders (nothing decoded), writing and reading it, counting its training files (for the model card) and what
differs between two records (what ``--resume`` reports when a data folder changed under a run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plugins.files import write_atomically
from training.config import TrainConfig, spec_folder
from training.datasets.davis import scan_sequences
from training.datasets.images import mask_files
from training.datasets.transforms import Split
from training.datasets.videos import VideoFolderDataset
from training.run_data import check_data_folder

DATA_FILES_FILE = "data_files.json"
"""The run folder's record of the local data files the run started on (:func:`data_files`), which ``--resume``
compares with the files there now (:func:`data_file_changes`)."""


_COMPARED = {"training": ("size", "frames"), "validation": ("size", "frames", "masks")}
"""The fields of a file's entry that matter to each use of the data: training reads only frames."""


def data_files(config: TrainConfig) -> dict[str, Any] | None:
    """The record of the files of ``config``'s local data (``videos:`` and ``davis:`` specs) a run reads: its
    training data (the ``train`` split) and, when it evaluates (``val_videos`` above 0), its validation data (the
    ``val`` split of ``--val-data``, or of the training data); None when neither is local (``synthetic:``).

    Format: ``{"sources": [{"spec": ..., "uses": ["training", "validation"], "files": [...]}]}``, one source per
    spec and split read, a spec whose two uses read the same files (a ``videos:`` folder) listed once with both
    uses. A file is ``{"name", "size", "frames", "masks"}``: a video file by its name in the folder and its size
    in bytes, its frame count left ``null`` (known only by opening the file); a DAVIS sequence by its frame
    folder relative to the spec's folder (``JPEGImages/480p/bear``), the bytes of its frames together and their
    number. ``masks`` counts the mask files of the video or sequence (0: unlabelled). Nothing is decoded: the
    folders are listed and the files' sizes read.

    Raises:
        DatasetError: a folder is missing (:func:`~training.run_data.check_data_folder`) or cannot be read as the
            dataset it names.
    """
    data = config.data
    uses: list[tuple[str, str, Split]] = [("training", data.spec, "train")]
    if data.val_videos > 0:
        uses.append(("validation", data.val_spec or data.spec, "val"))
    sources: list[dict[str, Any]] = []
    for use, spec, split in uses:
        folder = spec_folder(spec)
        if folder is None:
            continue
        check_data_folder(spec, data)
        files = _listed_files(spec, folder, split)
        same = next((source for source in sources if (source["spec"], source["files"]) == (spec, files)), None)
        if same is not None:
            same["uses"].append(use)
        else:
            sources.append({"spec": spec, "uses": [use], "files": files})
    return {"sources": sources} if sources else None


def _listed_files(spec: str, folder: Path, split: Split) -> list[dict[str, Any]]:
    """The entries of :func:`data_files` for the ``split`` of ``spec``, whose folder is ``folder``: the files the
    dataset reads, found as the dataset finds them."""
    if spec.partition(":")[0] == "videos":
        # Both splits read every video; the val split lists them without opening any (the train split checks each).
        videos = VideoFolderDataset(folder, "val", None, (1, 1)).files
        return [
            {
                "name": video.name,
                "size": video.stat().st_size,
                "frames": None,
                "masks": len(mask_files(video.parent / video.stem)),
            }
            for video in videos
        ]
    _, _, sequences = scan_sequences(folder, split)
    return [
        {
            "name": sequence.frames[0].parent.relative_to(folder).as_posix(),
            "size": sum(frame.stat().st_size for frame in sequence.frames),
            "frames": len(sequence.frames),
            "masks": len(sequence.masks) if sequence.masks is not None else 0,
        }
        for sequence in sequences
    ]


def record_data_files(run_dir: Path, config: TrainConfig) -> None:
    """Write :func:`data_files` of ``config`` into ``run_dir``'s :data:`DATA_FILES_FILE` (atomically), or remove
    an earlier one when the run reads no local data.

    Raises:
        DatasetError: as :func:`data_files`.
        OSError: the file cannot be written.
    """
    record = data_files(config)
    if record is None:
        (run_dir / DATA_FILES_FILE).unlink(missing_ok=True)
        return
    write_data_files(run_dir, record)


def write_data_files(run_dir: Path, record: dict[str, Any]) -> None:
    """Write ``record`` (a :func:`data_files` record) as ``run_dir``'s :data:`DATA_FILES_FILE`, atomically."""
    text = json.dumps(record, indent=2) + "\n"
    write_atomically(run_dir / DATA_FILES_FILE, lambda temporary: temporary.write_text(text))


def read_data_files(run_dir: Path) -> dict[str, Any] | None:
    """The record ``run_dir`` holds (:data:`DATA_FILES_FILE`); None when it holds none (a run that started before
    runs recorded their files, or that reads no local data).

    Raises:
        ValueError: the file is not such a record (the message names it).
        OSError: it cannot be read.
    """
    path = run_dir / DATA_FILES_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        for source in record["sources"]:
            if not (isinstance(source["spec"], str) and isinstance(source["uses"], list)):
                raise TypeError("a source without its spec or uses")
            for entry in source["files"]:
                if not isinstance(entry["name"], str):
                    raise TypeError("a file without its name")
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} cannot be read as a record of data files ({type(error).__name__}: {error})") from (
            error
        )
    return dict(record)


def training_file_count(record: dict[str, Any]) -> int | None:
    """How many files (videos, or DAVIS sequences) the training data of ``record`` (:func:`data_files`) has; None
    when the record has none (training data that is not local, with local validation data)."""
    sources = [source for source in record["sources"] if "training" in source["uses"]]
    return sum(len(source["files"]) for source in sources) if sources else None


def data_file_changes(recorded: dict[str, Any], current: dict[str, Any], limit: int = 10) -> list[str]:
    """What differs between the files a run started on (``recorded``) and those there now (``current``), both
    :func:`data_files` records: per data spec and use, the files added, removed, left out of the split while still
    in the folder (a ``davis:`` folder's split lists, or the rule reading them, changed) and changed (another size,
    frame count or, for validation data, number of masks), at most ``limit`` names of each; empty when nothing that
    the run reads changed. A use only one record has is left out (it comes with a change of configuration, which
    ``--resume`` refuses as such).
    """
    before, after = _files_by_use(recorded), _files_by_use(current)
    found: dict[tuple[str, str], list[str]] = {}  # (spec, differences) -> the uses they concern
    for use, fields in _COMPARED.items():
        if use not in before or use not in after or before[use][0] != after[use][0]:
            continue
        spec, (old, new) = before[use][0], (before[use][1], after[use][1])
        added = sorted(new.keys() - old.keys())
        folder = spec_folder(spec)
        left_out: list[str] = []
        removed: list[str] = []
        for name in sorted(old.keys() - new.keys()):
            # still in the folder but no longer read: the split chooses otherwise (a davis: folder's ImageSets lists)
            (left_out if folder is not None and (folder / name).exists() else removed).append(name)
        changed = [
            f"{name} ({', '.join(f'{field} {old[name].get(field)} -> {new[name].get(field)}' for field in moved)})"
            for name in sorted(old.keys() & new.keys())
            if (moved := [field for field in fields if old[name].get(field) != new[name].get(field)])
        ]
        parts = [
            f"{what} {_names(names, limit)}"
            for what, names in (
                ("added", added),
                ("removed", removed),
                ("left out of the split though still in the folder (the data's ImageSets lists decide)", left_out),
                ("changed", changed),
            )
            if names
        ]
        if parts:
            found.setdefault((spec, "; ".join(parts)), []).append(use)
    return [f"{spec} ({' and '.join(uses)} data): {differences}" for (spec, differences), uses in found.items()]


def _files_by_use(record: dict[str, Any]) -> dict[str, tuple[str, dict[str, dict[str, Any]]]]:
    """The spec and the files by name of each use of a :func:`data_files` record."""
    return {
        use: (source["spec"], {entry["name"]: entry for entry in source["files"]})
        for source in record["sources"]
        for use in source["uses"]
    }


def _names(names: list[str], limit: int) -> str:
    """``names`` joined by commas, the first ``limit`` of them, and how many more there are."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
