"""A run that cannot write one of its small files (a metrics line, the environment record, a sample picture) stops
with an error naming the file and its folder, as for the model files, and leaves no cut-off file behind.

The failures are real: a metrics line goes to ``/dev/full`` (every write fails with ``ENOSPC``, a full disk), and
the other files are written under a process file-size limit (``EFBIG``; :mod:`test_model_write_failures`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_model_write_failures import _file_size_limit

from plugins import VideoSlotModel
from plugins.testing import tiny_model_config
from training.environment import ENVIRONMENT_FILE, record_environment
from training.logging_sinks import METRICS_FILE, MetricSinks
from training.visualize import save_overlay

FULL_DEVICE = Path("/dev/full")


@pytest.mark.skipif(not FULL_DEVICE.exists(), reason="needs /dev/full (Linux) to fail writes as a full disk does")
def test_a_metrics_line_that_cannot_be_written_names_the_file_and_the_sinks_still_close(tmp_path: Path) -> None:
    sinks = MetricSinks(tmp_path)
    sinks.jsonl.close()
    sinks.jsonl = FULL_DEVICE.open("w", encoding="utf-8")
    with pytest.raises(
        OSError, match=rf"^cannot write the metrics \({METRICS_FILE}\) in {tmp_path} \(.*No space left"
    ):
        sinks.write(1, "train", {"loss": 1.0})
    sinks.close()  # the same failure again is not raised a second time, and TensorBoard is closed
    assert sinks.jsonl.closed


def test_an_environment_record_that_cannot_be_written_names_the_file(tmp_path: Path) -> None:
    with (
        _file_size_limit(10),
        pytest.raises(OSError, match=rf"^cannot write the environment record \({ENVIRONMENT_FILE}\) in"),
    ):
        record_environment(tmp_path, {"from_step": 0, "note": "x" * 100})
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # no temporary file left either


def _sample(tmp_path: Path):
    model = VideoSlotModel(**tiny_model_config()).eval()
    frames = torch.rand(1, 2, 3, *model.image_size)  # [B, T, 3, H, W]
    with torch.no_grad():
        return frames, model(frames), tmp_path / "samples" / "step-00000010.png"


def test_a_sample_picture_that_cannot_be_written_leaves_no_cut_off_file(tmp_path: Path) -> None:
    frames, output, path = _sample(tmp_path)
    with _file_size_limit(500), pytest.raises(OSError):
        save_overlay(frames, output, path)
    assert sorted(p.name for p in path.parent.iterdir()) == []
    save_overlay(frames, output, path)  # within the limit again: the picture is written whole
    assert path.stat().st_size > 500


def test_a_picture_cut_off_by_its_writer_never_takes_the_sample_name(tmp_path: Path, monkeypatch) -> None:
    """A full disk can fail the write after part of the file is out (Pillow then leaves those bytes: 64 KiB of a
    PNG on a full tmpfs); the picture is written under a temporary name, removed, and never renamed."""
    from PIL import Image

    def cut_off(picture: Image.Image, target: object, *args: object, **kwargs: object) -> None:
        Path(str(target)).write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
        raise OSError(28, "No space left on device")

    frames, output, path = _sample(tmp_path)
    monkeypatch.setattr(Image.Image, "save", cut_off)
    with pytest.raises(OSError, match="No space left"):
        save_overlay(frames, output, path)
    assert sorted(p.name for p in path.parent.iterdir()) == []
