"""Data settings past what the machine can run are refused before a run starts, naming the setting and the limit:
thousands of data workers (each a process of its own) were an out-of-memory kill of the whole machine, and a batch
whose frames alone outgrow the memory an allocator traceback after the first batch was loaded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from service.cli_limits import MEMORY_SHARE
from training.configs import get_config
from training.machine_fit import WORKERS_PER_CORE, machine_fit_problems
from training.run import main

GIB = 2**30


def _with_data(**changes: int):
    config = get_config("smoothsa_cnn")  # 64x64 frames, clips of 6
    return dataclasses.replace(config, data=dataclasses.replace(config.data, **changes))


def test_the_shipped_default_fits_a_two_core_machine() -> None:
    assert machine_fit_problems(get_config("smoothsa_cnn"), cores=2, memory_bytes=8 * GIB) == []
    assert machine_fit_problems(get_config("smoothsa_cnn_gpu"), cores=1, memory_bytes=8 * GIB) == []


def test_more_workers_than_the_cores_can_run_are_refused() -> None:
    assert machine_fit_problems(_with_data(num_workers=WORKERS_PER_CORE * 2), cores=2, memory_bytes=None) == []
    (problem,) = machine_fit_problems(_with_data(num_workers=WORKERS_PER_CORE * 2 + 1), cores=2, memory_bytes=None)
    assert problem.startswith("num_workers (--workers) 9 is more than this machine can run: at most 4 per CPU core")
    assert "(2: 8)" in problem


def test_processes_of_one_machine_share_its_cores_and_memory() -> None:
    """Under torchrun, LOCAL_WORLD_SIZE processes each fork their workers and load their batches."""
    assert machine_fit_problems(_with_data(num_workers=4), cores=2, memory_bytes=None, processes=2) == []
    (problem,) = machine_fit_problems(_with_data(num_workers=5), cores=2, memory_bytes=None, processes=2)
    assert "(2: 4 per process (2 on this machine))" in problem
    clip_bytes = 6 * 3 * 64 * 64 * 4
    memory = 100 * clip_bytes * MEMORY_SHARE
    assert machine_fit_problems(_with_data(batch_size=50), cores=2, memory_bytes=memory, processes=2) == []
    (problem,) = machine_fit_problems(_with_data(batch_size=51), cores=2, memory_bytes=memory, processes=2)
    assert problem.endswith("per process (2 on this machine); at most 50 clips fit"), problem


def test_a_batch_whose_frames_outgrow_the_memory_is_refused_with_the_largest_that_fits() -> None:
    clip_bytes = 6 * 3 * 64 * 64 * 4  # float32 [T, 3, H, W]
    memory = 100 * clip_bytes * MEMORY_SHARE  # exactly 100 clips fit
    assert machine_fit_problems(_with_data(batch_size=100), cores=2, memory_bytes=memory) == []
    (problem,) = machine_fit_problems(_with_data(batch_size=101), cores=2, memory_bytes=memory)
    assert problem.startswith("batch_size (--batch-size) 101: its 6-frame clips at 64x64 take"), problem
    assert problem.endswith("at most 100 clips fit"), problem
    assert machine_fit_problems(_with_data(batch_size=10**6), cores=2, memory_bytes=None) == []  # unknown memory


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--workers", "5000"], "error: num_workers (--workers) 5000 is more than this machine can run"),
        (["--batch-size", "100000000"], "error: batch_size (--batch-size) 100000000: its"),
    ],
)
def test_the_command_refuses_them_before_the_run_folder_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], said: str
) -> None:
    out = tmp_path / "run"
    assert main(["--config", "smoothsa_cnn", *flags, "--steps", "1", "--out", str(out), "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith(said)
    assert not out.exists()
