"""``python -m training.run`` sizes torch's threads to the CPU cores its process may use (the container's CPU limit,
not the node's cores torch counts), shared among the training processes of the machine; a thread count set in the
environment wins, and the count is never raised."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import training.environment
from training.ceiling import main as ceiling_main
from training.environment import ENVIRONMENT_FILE, size_torch_threads
from training.run import main as run_main


@pytest.fixture(autouse=True)
def torch_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No thread count in the environment, and torch's count put back afterwards."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def usable_cores(monkeypatch: pytest.MonkeyPatch, cores: int) -> None:
    """Make the process see ``cores`` usable cores (as a container's CPU limit would)."""
    monkeypatch.setattr(training.environment, "available_cores", lambda: cores)


def test_the_threads_are_lowered_to_the_processs_share_of_the_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    usable_cores(monkeypatch, 6)
    torch.set_num_threads(4)  # torch's default on a bigger node
    line = size_torch_threads({"LOCAL_WORLD_SIZE": "3"})
    assert torch.get_num_threads() == 2
    assert line is not None and "from 4 to 2" in line and "6 CPU cores shared by 3 processes" in line


def test_more_processes_than_cores_get_one_thread_each(monkeypatch: pytest.MonkeyPatch) -> None:
    usable_cores(monkeypatch, 2)
    torch.set_num_threads(3)
    assert size_torch_threads({"LOCAL_WORLD_SIZE": "8"}) is not None
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("variable", ["OMP_NUM_THREADS", "MKL_NUM_THREADS"])
def test_a_thread_count_set_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    usable_cores(monkeypatch, 1)
    torch.set_num_threads(3)
    assert size_torch_threads({variable: "3"}) is None
    assert torch.get_num_threads() == 3


def test_the_count_is_never_raised_and_then_nothing_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    usable_cores(monkeypatch, 8)
    torch.set_num_threads(2)
    assert size_torch_threads({}) is None
    assert torch.get_num_threads() == 2


def train(out: Path) -> int:
    return run_main(["--config", "tiny", "--steps", "1", "--val-videos", "0", "--no-progress", "--out", str(out)])


def recorded_threads(run_dir: Path) -> int:
    (segment,) = json.loads((run_dir / ENVIRONMENT_FILE).read_text())["segments"]
    return int(segment["threads_per_process"])


def test_a_run_trains_with_and_records_its_share_of_the_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    usable_cores(monkeypatch, 1)  # a 1-CPU limit
    torch.set_num_threads(2)  # torch's default: the cores it sees
    assert train(tmp_path / "run") == 0
    assert recorded_threads(tmp_path / "run") == 1
    notes = [line for line in capsys.readouterr().err.splitlines() if "torch threads" in line]
    assert notes == [
        "note: torch threads lowered from 2 to 1: this process may use 1 CPU core (its affinity and its container's "
        "CPU limit); set OMP_NUM_THREADS to choose"
    ]


def test_a_run_keeps_the_users_omp_num_threads_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    usable_cores(monkeypatch, 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    assert train(tmp_path / "run") == 0
    assert recorded_threads(tmp_path / "run") == 2
    assert "torch threads" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "arguments"),
    [
        ("training.evaluate", ["--data", "synthetic:easy"]),
        ("training.object_recall", ["--data", "synthetic:easy"]),
        ("training.export", ["--out", "{tmp}/export"]),
    ],
)
def test_the_commands_that_do_not_train_size_their_threads_too(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    arguments: list[str],
) -> None:
    """Evaluation, recall and export size torch's threads as training does, before they load the model (a model
    folder that is not there then ends the command)."""
    main = importlib.import_module(f"{command}.__main__" if command == "training.export" else command).main
    usable_cores(monkeypatch, 1)
    torch.set_num_threads(2)
    missing = str(tmp_path / "no_model")
    code = main(["--model", missing, *(argument.format(tmp=tmp_path) for argument in arguments)])
    assert code != 0 and torch.get_num_threads() == 1
    assert "torch threads lowered from 2 to 1" in capsys.readouterr().err


def test_the_ceiling_command_sizes_its_threads_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    usable_cores(monkeypatch, 1)
    torch.set_num_threads(2)
    code = ceiling_main(["--data", "nowhere:x"])  # no such data: the command ends once its threads are sized
    assert code != 0 and torch.get_num_threads() == 1
    assert "torch threads lowered from 2 to 1" in capsys.readouterr().err
