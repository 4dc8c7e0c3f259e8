"""Under ``torchrun`` the processes train one model: DistributedDataParallel averages the gradients, so every
process holds the same weights after every step, while each draws its own model noise (seeded by its rank) and a
resumed run continues every process's random generators exactly. An error is reported once: one that every
process meets (a flag), or that the processes agree on when one of them meets it (starting the run, a
checkpoint), by the main process; one a process meets alone while training, by that process.

Two gloo processes on the CPU, started by ``torchrun --standalone`` (it picks a free port itself) with this file
as their script."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import torch.distributed as dist
from torchrun_jobs import TORCHRUN_TWO_PROCESSES, torchrun_env

import training.loop as loop
from plugins import build_plugin_manager
from plugins.interfaces import Loss
from plugins.types import VideoOutput
from training.config import LossTerm
from training.configs import get_config
from training.distributed import ProcessGroup, init_from_environment
from training.run_state import Run

REPO = Path(__file__).resolve().parents[2]
STEPS = 4


class RandomnessProbe(Loss):
    """A loss of weight 0 that records, at every step, a digest of this process's torch generator state (what the
    model's noise is drawn from) and the timeout of the process group."""

    name = "randomness_probe"
    digests: ClassVar[list[str]] = []
    timeouts: ClassVar[list[float]] = []

    def forward(self, output: VideoOutput, progress: float) -> torch.Tensor:
        """0, after recording."""
        del output, progress  # Unused.
        RandomnessProbe.digests.append(hashlib.sha1(torch.get_rng_state().numpy().tobytes()).hexdigest())
        backend = dist.distributed_c10d._get_default_group()._get_backend(torch.device("cpu"))
        RandomnessProbe.timeouts.append(backend.options._timeout.total_seconds())
        return torch.zeros(())


class NotFiniteOnRankOne(Loss):
    """A loss that is NaN on rank 1 from its second step on, and 0 elsewhere: the averaged gradient makes every
    process's weights NaN, which the checkpoint of the last step refuses on rank 0."""

    name = "not_finite_on_rank_one"
    calls = 0

    def forward(self, output: VideoOutput, progress: float) -> torch.Tensor:
        """NaN (times the slots, so that it reaches the gradient) on rank 1 after its first call, else 0."""
        del progress  # Unused.
        NotFiniteOnRankOne.calls += 1
        poisoned = os.environ["RANK"] == "1" and NotFiniteOnRankOne.calls > 1
        return output.slots.mean() * (float("nan") if poisoned else 0.0)


class FailsOnRankOne(Loss):
    """A loss that raises on rank 1 at its second step, and is 0 elsewhere."""

    name = "fails_on_rank_one"
    calls = 0

    def forward(self, output: VideoOutput, progress: float) -> torch.Tensor:
        """0, or a ``ValueError`` on rank 1 at its second call."""
        del progress  # Unused.
        FailsOnRankOne.calls += 1
        if os.environ["RANK"] == "1" and FailsOnRankOne.calls == 2:
            raise ValueError("a clip only rank 1 draws cannot be read")
        return output.slots.mean() * 0.0


class RegisteredOnRankZeroOnly(Loss):
    """A loss of value 0 that only rank 0 registers."""

    name = "registered_on_rank_zero_only"

    def forward(self, output: VideoOutput, progress: float) -> torch.Tensor:
        """0."""
        del progress  # Unused.
        return output.slots.mean() * 0.0


def _train(run_dir: str, stop_after: int | None, resume: bool) -> None:
    """One training process of the tiny run in ``run_dir``: saves its weights and probe records as
    ``rank-<RANK>.pt`` there (this file run as a script under torchrun)."""
    torch.set_num_threads(1)
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.add_loss(RandomnessProbe)
    config = get_config("tiny")
    data = dataclasses.replace(config.data, val_videos=0)
    losses = [*config.losses, LossTerm("randomness_probe", weight=0.0)]
    config = dataclasses.replace(config, steps=STEPS, log_every=1, checkpoint_every=STEPS, data=data, losses=losses)
    runs: list[Run] = []
    build_run = loop.build_run

    def keep(*args: Any, **kwargs: Any) -> Run:
        runs.append(build_run(*args, **kwargs))
        return runs[-1]

    loop.build_run = keep  # the run fit() trains, to read its weights afterwards
    loop.fit(config, run_dir, progress=False, registry=registry, stop_after=stop_after, resume=resume)
    weights = {name: parameter.detach().clone() for name, parameter in runs[0].model.named_parameters()}
    record = {"weights": weights, "digests": RandomnessProbe.digests, "timeouts": RandomnessProbe.timeouts}
    torch.save(record, Path(run_dir) / f"rank-{os.environ['RANK']}.pt")


def _train_cli(arguments: list[str]) -> int:
    """``training.run``'s command line with the losses above registered in the default registry (on rank 0 only:
    :class:`RegisteredOnRankZeroOnly`), and two flags of its own: ``--failing-evaluation`` and
    ``--lagging-backend`` (:func:`_lagging_backend`)."""
    from plugins import default_registry
    from training.run import main

    torch.set_num_threads(1)
    default_registry().add_loss(NotFiniteOnRankOne)
    default_registry().add_loss(FailsOnRankOne)
    if os.environ["RANK"] == "0":
        default_registry().add_loss(RegisteredOnRankZeroOnly)
    if "--failing-evaluation" in arguments:  # the main process's evaluation raises, as a full disk would
        arguments = [argument for argument in arguments if argument != "--failing-evaluation"]
        loop.evaluate = _failing_evaluation
    if "--lagging-backend" in arguments:
        arguments = [argument for argument in arguments if argument != "--lagging-backend"]
        loop.init_from_environment = _lagging_backend
    return main(arguments)


def _failing_evaluation(*args: Any, **kwargs: Any) -> Any:
    del args, kwargs  # Unused.
    raise OSError("the evaluation videos cannot be read")


GLOO_WORKER_THREAD = "pt_gloo_runloop"
"""The name torch gives the threads that run gloo's collective operations."""


def _lagging_backend(device: str) -> ProcessGroup:
    """:func:`~training.distributed.init_from_environment`, then gloo's worker threads made to run only while every
    other thread of this process waits (Linux): the process on a CPU of its own (when there are enough), the
    workers at idle priority. They then let go of a collective operation's tensors only once the process waits
    for something, so a process that leaves right after its last collective operation leaves them holding its
    tensors until the interpreter, shutting down, waits for something."""
    group = init_from_environment(device)
    cpus = sorted(os.sched_getaffinity(0))
    deadline = time.monotonic() + 30
    while not (workers := _threads_named(GLOO_WORKER_THREAD)):  # a new thread names itself once it runs
        if time.monotonic() > deadline:  # else the test that uses this would check nothing
            raise RuntimeError(f"no thread named {GLOO_WORKER_THREAD} to hold back")
        time.sleep(0.05)
    for task in Path("/proc/self/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpus[group.rank % len(cpus)]})
    for worker in workers:
        os.sched_setscheduler(worker, os.SCHED_IDLE, os.sched_param(0))
    return group


def _threads_named(name: str) -> list[int]:
    """The ids of this process's threads called ``name``."""
    named = []
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            if (task / "comm").read_text().strip() == name:
                named.append(int(task.name))
    return named


def _torchrun(scratch: Path, *arguments: str, monitor_interval_s: float = 0.1) -> subprocess.CompletedProcess[str]:
    """This file run as a two-process job with ``arguments``; torchrun's own files go under ``scratch``. torchrun
    looks at its processes every ``monitor_interval_s`` (its default, 0.1 s) and stops the others once one failed."""
    command = [*TORCHRUN_TWO_PROCESSES, "--monitor-interval", str(monitor_interval_s), __file__, *arguments]
    env = torchrun_env(scratch)
    with subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as job:
        try:
            stdout, stderr = job.communicate(timeout=180)
        except subprocess.TimeoutExpired:  # a hung job: torchrun stops its processes on SIGTERM (they have sessions
            job.terminate()  # of their own, which a kill of torchrun alone would leave running)
            job.communicate(timeout=60)
            raise
    return subprocess.CompletedProcess(job.args, job.returncode, stdout, stderr)


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return [torch.load(run_dir / f"rank-{rank}.pt", weights_only=True) for rank in (0, 1)]


def _reported_by_the_main_process(stderr: str) -> bool:
    """Whether torchrun's summary names the main process (rank 0, which reported the error) as the root cause, and
    no process was aborted as it left (see ``training.distributed._lent_to_backend``)."""
    return _root_cause(stderr) == 0 and "terminate called" not in stderr and "SIGABRT" not in stderr


def _root_cause(stderr: str) -> int:
    """The rank of the failure torchrun's summary gives as the root cause."""
    match = re.search(r"Root Cause \(first observed failure\):\n\[0\]:\n(?:.*\n)*?\s*rank\s*: (\d+)", stderr)
    assert match is not None, stderr[-3000:]
    return int(match.group(1))


def _different(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> list[str]:
    assert first.keys() == second.keys()
    return [name for name in first if not torch.equal(first[name], second[name])]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-process run of :data:`STEPS` steps, uninterrupted."""
    run_dir = tmp_path_factory.mktemp("straight")
    result = _torchrun(tmp_path_factory.mktemp("straight-scratch"), "train", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_every_process_holds_the_same_weights_and_draws_its_own_noise(straight: Path) -> None:
    """The processes train on different clips; with averaged gradients their weights stay equal. Their
    generators differ at every step, and the process group waits for an evaluation on rank 0 longer than
    torch's default 30 minutes."""
    first, second = _records(straight)
    assert not _different(first["weights"], second["weights"]), "the processes trained different models"
    assert len(first["digests"]) == len(second["digests"]) == STEPS
    assert all(a != b for a, b in zip(first["digests"], second["digests"], strict=True)), "the same noise"
    assert first["timeouts"][0] == second["timeouts"][0] > 30 * 60


def test_a_resumed_two_process_run_reaches_the_same_weights(straight: Path, tmp_path: Path) -> None:
    """Stopped after 2 steps and resumed, each process continues its own generators: the weights are those of
    the uninterrupted run."""
    run_dir = tmp_path / "run"
    stopped = _torchrun(tmp_path, "train", str(run_dir), "--stop-after", "2")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    resumed = _torchrun(tmp_path, "train", str(run_dir), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, actual = _records(straight), _records(run_dir)
    for rank in (0, 1):
        assert actual[rank]["digests"] == expected[rank]["digests"][2:], f"rank {rank}'s noise changed"
        assert not _different(expected[rank]["weights"], actual[rank]["weights"]), f"rank {rank}'s weights"


def _config_with(tmp_path: Path, loss: str) -> Path:
    """A config file: ``tiny`` for 3 steps without evaluations, plus the loss ``loss``."""
    config = tmp_path / f"{loss}.py"
    config.write_text(
        "import dataclasses\n"
        "from training.config import LossTerm\n"
        "from training.configs import get_config as shipped\n\n\n"
        "def get_config():\n"
        "    config = shipped('tiny')\n"
        "    data = dataclasses.replace(config.data, val_videos=0)\n"
        f"    losses = [*config.losses, LossTerm({loss!r}, 1.0)]\n"
        "    return dataclasses.replace(config, steps=3, data=data, losses=losses)\n"
    )
    return config


def test_a_refused_checkpoint_stops_every_process_with_one_report(tmp_path: Path) -> None:
    """Rank 1's NaN loss reaches every process's weights; rank 0 refuses their checkpoint and says so, once, and
    rank 1 stops with it (silently) instead of running into a broken connection."""
    config = _config_with(tmp_path, "not_finite_on_rank_one")
    result = _torchrun(tmp_path, "cli", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress")
    assert result.returncode != 0
    assert result.stderr.count("the weights are not finite at step 3") == 1, result.stderr[-3000:]
    assert "error: the weights are not finite at step 3" in result.stderr  # said by rank 0
    assert _reported_by_the_main_process(result.stderr), result.stderr[-3000:]
    assert "Connection closed" not in result.stderr and "[rank1]" not in result.stderr, result.stderr[-3000:]


def test_an_error_one_process_meets_while_training_is_reported_by_it(tmp_path: Path) -> None:
    """Only rank 1 sees its error: it says so, naming itself; the main process, whose gradient exchange then finds
    rank 1 gone, says that in one line (not the broken connection's traceback, taken for the run's error) and fails
    too (an elastic job's agents restart the workers of a failed group, never of a finished one)."""
    config = _config_with(tmp_path, "fails_on_rank_one")
    # torchrun stops the main process once it sees rank 1 gone: on a busy machine, before the main process has
    # found it out and said so itself, unless it looks less often (every 3 s here)
    arguments = ("cli", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress")
    result = _torchrun(tmp_path, *arguments, monitor_interval_s=3)
    assert result.returncode != 0
    message = "error (process 1): a clip only rank 1 draws cannot be read"
    assert result.stderr.count(message) == 1, result.stderr[-3000:]
    assert "[rank0]" not in result.stderr and "Connection closed" not in result.stderr, result.stderr[-3000:]
    assert "error (process 0): another process of the run is gone; this one stops too" in result.stderr


def test_an_error_one_process_meets_at_the_start_stops_every_process(tmp_path: Path) -> None:
    """Only rank 1 lacks a loss the config names: every process stops (none waits for rank 1 at its next
    collective operation), and the main process says why, naming rank 1."""
    config = _config_with(tmp_path, "registered_on_rank_zero_only")
    result = _torchrun(tmp_path, "cli", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress")
    assert result.returncode != 0
    assert result.stderr.count("error (process 1): ") == 1, result.stderr[-3000:]
    assert "registered_on_rank_zero_only" in result.stderr and "[rank0]" not in result.stderr, result.stderr[-3000:]
    assert _reported_by_the_main_process(result.stderr), result.stderr[-3000:]


def _failing_evaluation_arguments(tmp_path: Path) -> list[str]:
    """The command line of ``tiny`` for 4 steps with an evaluation every 2, which fails on the main process."""
    config = tmp_path / "evaluated.py"
    config.write_text(
        "import dataclasses\n"
        "from training.configs import get_config as shipped\n\n\n"
        "def get_config():\n"
        "    return dataclasses.replace(shipped('tiny'), steps=4, eval_every=2)\n"
    )
    return ["--config", str(config), "--out", str(tmp_path / "run"), "--no-progress", "--failing-evaluation"]


def test_an_evaluation_that_fails_on_the_main_process_stops_every_process_with_one_report(tmp_path: Path) -> None:
    """Only the main process evaluates: when its evaluation fails, the others stop with it (none runs on into the
    next step's gradient exchange and a broken connection), and it alone reports the error."""
    result = _torchrun(tmp_path, "cli", *_failing_evaluation_arguments(tmp_path))
    assert result.returncode != 0
    assert result.stderr.count("the evaluation videos cannot be read") == 1, result.stderr[-3000:]
    assert "Connection closed" not in result.stderr and "[rank1]" not in result.stderr, result.stderr[-3000:]
    assert _reported_by_the_main_process(result.stderr), result.stderr[-3000:]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="holds gloo's threads back with Linux's idle priority")
@pytest.mark.parametrize("failure", ["start", "evaluation"])
def test_an_agreed_failure_ends_with_the_main_processs_report_while_gloos_threads_lag(
    tmp_path: Path, failure: str
) -> None:
    """gloo's worker threads let go of a collective operation's tensors after it has returned, and take the GIL to
    do so; one that asks for it once the interpreter is shutting down aborts its process, which torchrun then
    names as the root cause. Held back (:func:`_lagging_backend`), they still hold the last agreement's tensors
    as the processes leave (after rank 1 cannot start, or the main process's evaluation failed), unless the
    agreement waited for them (without that wait, most such jobs end so)."""
    if failure == "start":
        config = _config_with(tmp_path, "registered_on_rank_zero_only")
        arguments = ["--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"]
        message = "error (process 1): "
    else:
        arguments = _failing_evaluation_arguments(tmp_path)
        message = "the evaluation videos cannot be read"
    result = _torchrun(tmp_path, "cli", *arguments, "--lagging-backend")
    assert result.returncode != 0
    assert result.stderr.count(message) == 1, result.stderr[-3000:]
    assert _reported_by_the_main_process(result.stderr), result.stderr[-3000:]


def test_a_bad_flag_is_reported_once(tmp_path: Path) -> None:
    """Every process refuses the same flag; one of them says so."""
    result = _torchrun(tmp_path, "cli", "--config", "tiny", "--steps", "0", "--out", str(tmp_path / "run"))
    assert result.returncode != 0
    assert result.stderr.count("error: --steps must be at least 1") == 1, result.stderr[-3000:]


if __name__ == "__main__":
    if sys.argv[1] == "cli":
        raise SystemExit(_train_cli(sys.argv[2:]))
    arguments = sys.argv[2:]
    stop = int(arguments[arguments.index("--stop-after") + 1]) if "--stop-after" in arguments else None
    _train(arguments[0], stop, "--resume" in arguments)
