"""A run that cannot write a model file stops with one error naming the folder, whatever writes it: the
checkpoint, ``best/`` and the final ``model/``, when safetensors itself fails to write the weights file.

The failure is real: the process's file size limit (``RLIMIT_FSIZE``, with ``SIGXFSZ`` ignored) is set below the
weights file's size, so the kernel refuses safetensors' write with ``EFBIG`` and safetensors raises its own
``SafetensorError`` ("I/O error: File too large (os error 27)"), as it does with ``ENOSPC`` on a full disk; the
run's small files (metrics, TensorBoard, config.json, sample pictures) stay below the limit.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from training.checkpoint import list_checkpoints
from training.config import TrainConfig
from training.configs import get_config
from training.loop import fit

resource = pytest.importorskip("resource")  # POSIX
signal = pytest.importorskip("signal")

_LIMIT = 100_000
"""Bytes: above every small file of a tiny run, below its weights file (about 360 kB)."""


class _FileSizeLimit:
    """While applied, writes that would make a file larger than ``limit`` bytes fail with ``EFBIG``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.saved: tuple[tuple[int, int], object] | None = None

    def apply(self) -> None:
        if self.saved is None:
            self.saved = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit, self.saved[0][1]))

    def restore(self) -> None:
        if self.saved is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, self.saved[0])
            signal.signal(signal.SIGXFSZ, self.saved[1])
            self.saved = None


@contextlib.contextmanager
def _file_size_limit(limit: int) -> Iterator[None]:
    """:class:`_FileSizeLimit` over a block."""
    applied = _FileSizeLimit(limit)
    applied.apply()
    try:
        yield
    finally:
        applied.restore()


def _tiny(steps: int, **settings: object) -> TrainConfig:
    config = get_config("tiny")
    data = dataclasses.replace(config.data, val_videos=1, val_frames=2)
    return dataclasses.replace(config, steps=steps, data=data, log_every=1, **settings)  # type: ignore[arg-type]


def _hidden(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_a_checkpoint_whose_weights_safetensors_cannot_write_is_an_error_naming_the_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with _file_size_limit(_LIMIT), pytest.raises(OSError) as raised:
        fit(_tiny(2, eval_every=0, checkpoint_every=1), run_dir, progress=False)
    message = str(raised.value)
    assert message.startswith(f"cannot write the checkpoint in {run_dir / 'checkpoints'} ("), message
    assert "File too large" in message and message.endswith("is the disk full?"), message
    assert list_checkpoints(run_dir) == [] and _hidden(run_dir / "checkpoints") == []


def test_a_best_model_safetensors_cannot_write_is_an_error_naming_the_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with _file_size_limit(_LIMIT), pytest.raises(OSError) as raised:  # step 1's evaluation; no checkpoint due
        fit(_tiny(4, eval_every=1, checkpoint_every=4), run_dir, progress=False)
    message = str(raised.value)
    assert message.startswith(f"cannot write the best model in {run_dir / 'best'} ("), message
    assert "File too large" in message and message.endswith("is the disk full?"), message
    assert not (run_dir / "best").exists() and _hidden(run_dir) == []


def test_a_final_model_safetensors_cannot_write_is_an_error_naming_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The final model is written after the last checkpoint, which holds the same weights file: the limit is set
    once training is over (when the loop ends its process group), so only the final model meets it."""
    import training.loop as loop

    real_shutdown = loop.shutdown
    limit = _FileSizeLimit(_LIMIT)

    def shutdown_then_limit(group: object) -> None:
        real_shutdown(group)  # type: ignore[arg-type]
        limit.apply()

    monkeypatch.setattr(loop, "shutdown", shutdown_then_limit)
    run_dir = tmp_path / "run"
    try:
        with pytest.raises(OSError) as raised:
            fit(_tiny(2, eval_every=0, checkpoint_every=2), run_dir, progress=False)
    finally:
        limit.restore()
    message = str(raised.value)
    assert message.startswith(f"cannot write the final model in {run_dir / 'model'} ("), message
    assert "File too large" in message and message.endswith("is the disk full?"), message
    assert not (run_dir / "model").exists() and _hidden(run_dir) == []
    assert [path.name for path in list_checkpoints(run_dir)] == ["step-00000002"]  # --resume finishes it
