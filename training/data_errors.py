"""A training-data error met while a run trains (a file the start-up checks passed that fails to decode): cut back
to its own message when a DataLoader worker raised it, and followed by what to do about it."""

from __future__ import annotations

from collections.abc import Iterator

from training.data_files import DATA_FILES_FILE
from training.datasets import DatasetError, VideoClip

MID_RUN_DATA_ADVICE = (
    "remove or re-encode that file (left as it is, it stops a resumed run at this step again: each step's clips "
    f"depend only on the seed and the step), delete the run folder's {DATA_FILES_FILE} (the record of the files "
    "the run started on, which a --resume compares the data folder with: the run then records the files as they "
    "are), and run the same command with --resume: the run's checkpoints are intact, and it continues from the "
    "newest (from step 0 when there is none yet)"
)
"""What a training-data error met during the run adds to its message (:func:`reported`)."""


def reported(batches: Iterator[VideoClip]) -> Iterator[VideoClip]:
    """``batches``, with a data error met while training (a file the start-up checks passed that fails to decode)
    cut back to its own message when a worker process raised it (the DataLoader prefixes the worker's whole
    traceback), and followed by what to do: :data:`MID_RUN_DATA_ADVICE`."""
    try:
        yield from batches
    except DatasetError as error:
        text = str(error)
        marker = f"{type(error).__name__}: "
        # The DataLoader's text: "Caught DatasetError in DataLoader worker process N.\nOriginal " and the worker's
        # formatted exception, which starts with "Traceback" or, when the error was raised from an exception that
        # was made but never raised (the decoders' "ends early"), with that exception's own line.
        in_worker = text.startswith(f"Caught {type(error).__name__} in DataLoader worker process") and marker in text
        if in_worker:
            text = text.rsplit(marker, 1)[1].strip()
        raise DatasetError(f"{text}; {MID_RUN_DATA_ADVICE}") from (None if in_worker else error)
