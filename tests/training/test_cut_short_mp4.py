"""An MP4 whose index comes first (a "fast start" file, as downloads are) still opens with its full frame count
when a copy of it is cut short; training refuses it at start-up, naming the file, rather than failing mid-run at
the same step on every resume. A data error met mid-run says to remove or re-encode the file and resume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from training.data_errors import MID_RUN_DATA_ADVICE, reported
from training.data_files import DATA_FILES_FILE
from training.datasets import DatasetError, VideoClip, build_dataset
from training.datasets.decoding import frame_count
from training.datasets.videos import indexed_end_missing

av = pytest.importorskip("av")

FRAMES = 30


def fast_start_mp4(path: Path) -> bytes:
    """A 30-frame MPEG-4 file of noise (large frames), its index first and a keyframe every 10 frames; its bytes."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.height, stream.width, stream.pix_fmt = 48, 64, "yuv420p"
        stream.codec_context.gop_size = 10
        for _ in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path.read_bytes()


@pytest.mark.parametrize(
    ("keep", "why"),
    [(0.6, "the data of its last keyframe lies past the end"), (0.99, "the file ends inside the data of one")],
    ids=["before-the-last-keyframe", "inside-the-last-frames"],
)
def test_a_fast_start_mp4_cut_short_is_refused_when_training_starts(tmp_path: Path, keep: float, why: str) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    whole = fast_start_mp4(folder / "whole.mp4")
    cut = folder / "download.mp4"
    cut.write_bytes(whole[: int(len(whole) * keep)])
    assert frame_count(cut) == FRAMES  # what the header says, as for the whole file
    assert indexed_end_missing(folder / "whole.mp4") is None
    with pytest.raises(DatasetError) as refused:
        build_dataset(f"videos:{folder}", "train", 4, (32, 32))
    message = str(refused.value)
    assert "1 video file(s) cannot be read: download.mp4; remove or re-encode them" in message
    assert f"{cut}: it is cut short (an interrupted copy or download?)" in message and why in message
    assert len(build_dataset(f"videos:{folder}", "val", 4, (32, 32))) == 2  # evaluation reads what it decodes


def test_a_data_error_met_mid_run_says_to_remove_the_file_and_resume() -> None:
    failure = "rec/download.mp4: cannot decode video frame 295, corrupt or cut short (pyav: End of file)"

    def batches(text: str) -> Iterator[VideoClip]:
        raise DatasetError(text)
        yield  # a generator, as the DataLoader's iterator is

    worker = f"Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback ...\nDatasetError: {failure}"
    for text in (failure, worker):
        with pytest.raises(DatasetError) as stopped:
            list(reported(batches(text)))
        assert str(stopped.value) == f"{failure}; {MID_RUN_DATA_ADVICE}"
    assert "remove or re-encode that file" in MID_RUN_DATA_ADVICE and "with --resume" in MID_RUN_DATA_ADVICE
    assert "checkpoints are intact" in MID_RUN_DATA_ADVICE
    assert f"delete the run folder's {DATA_FILES_FILE}" in MID_RUN_DATA_ADVICE


def test_a_worker_error_raised_from_an_exception_never_raised_is_cut_back_too() -> None:
    """The decoders raise "ends early" from a ``ValueError`` they made but never raised; the worker's text then
    starts with that exception's line, not with "Traceback" (what torch's DataLoader builds, here by its own
    wrapper)."""
    from torch._utils import ExceptionWrapper

    failure = "rec/x.avi: the file ends early, after frame 40 (at 2.733 s of the 4.000 s its header gives)"
    try:
        early = ValueError(failure)
        raise DatasetError(str(early)) from early
    except DatasetError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")

    def batches() -> Iterator[VideoClip]:
        wrapped.reraise()
        yield  # a generator, as the DataLoader's iterator is

    with pytest.raises(DatasetError) as stopped:
        list(reported(batches()))
    assert str(stopped.value) == f"{failure}; {MID_RUN_DATA_ADVICE}"
    assert stopped.value.__cause__ is None
