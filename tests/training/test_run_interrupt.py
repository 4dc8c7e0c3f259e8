"""Stopping a training run by signal: Ctrl-C (SIGINT to the whole process group, data workers included) or
SIGTERM stops it promptly at a step boundary, with a checkpoint of that step, and ``--resume`` continues exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from child_processes import children_take_ctrl_c, popen_with_ctrl_c
from safetensors.torch import load_file

from training.checkpoint import checkpoint_step, list_checkpoints

REPO = Path(__file__).resolve().parents[2]
WORKERS = 3


def _trained_steps(metrics: Path) -> int:
    if not metrics.is_file():
        return 0
    lines = metrics.read_text().split("\n")[:-1]  # the text after the last newline may be a row being written
    rows = [json.loads(line) for line in lines if line.strip()]
    return max((row["step"] for row in rows if row["kind"] == "train"), default=0)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_to_the_process_group_stops_a_run_with_workers_promptly(tmp_path: Path, signal_number: int) -> None:
    """A terminal's Ctrl-C, or ``torchrun``'s SIGTERM (it signals its process's whole group), stops a run with data
    workers promptly at a step boundary, with a checkpoint of it. Before, a worker that took Ctrl-C itself could not
    exit (the DataLoader waited 5 s for each), and SIGTERM ended the workers at once, so the run failed writing that
    checkpoint (its error called a full disk); the workers now run in process groups of their own."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "training.run", "--config", "tiny", "--steps", "100000"]
    command += ["--workers", str(WORKERS)]
    command += ["--eval-every", "0", "--val-videos", "0", "--no-progress", "--out", str(out)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    with popen_with_ctrl_c(
        command,
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        start_new_session=True,  # its own process group, as a terminal's foreground job or a torchrun process has
    ) as process:
        try:
            deadline = time.monotonic() + 120
            while _trained_steps(out / "metrics.jsonl") < 20:  # workers running and batches queued
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "no training steps within 120 s"
                time.sleep(0.2)
            os.killpg(process.pid, signal_number)
            interrupted = time.monotonic()
            _, stderr = process.communicate(timeout=120)
            took = time.monotonic() - interrupted
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal_number, stderr
    assert f"{signal.Signals(signal_number).name}: stopping after the current step" in stderr, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert took < 10, f"the run took {took:.1f} s to stop"
    step = checkpoint_step(list_checkpoints(out)[-1])
    assert step >= _trained_steps(out / "metrics.jsonl") >= 20  # the stop's checkpoint: no logged step lost


def _run_command(config: Path, out: Path) -> list[str]:
    command = [sys.executable, "-m", "training.run", "--config", str(config), "--workers", "1", "--val-videos", "0"]
    return [*command, "--no-progress", "--out", str(out)]


def test_sigterm_stops_at_a_step_boundary_with_its_checkpoint_and_resume_continues_exactly(tmp_path: Path) -> None:
    """The first SIGTERM (a supervisor stopping a pod) or Ctrl-C finishes the step, writes a checkpoint of it
    between the periodic ones (none here: their interval is longer than the run) and stops; ``--resume`` then ends
    where an uninterrupted run does."""
    steps = 200
    config = tmp_path / "tiny_long.py"
    config.write_text(
        "import dataclasses\n"
        "from training.configs import get_config as shipped_config\n\n\n"
        "def get_config():\n"
        f"    return dataclasses.replace(shipped_config('tiny'), steps={steps}, checkpoint_every=9999, log_every=1)\n"
    )
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = subprocess.run(
        _run_command(config, tmp_path / "straight"), cwd=REPO, env=environment, text=True, capture_output=True
    )
    assert straight.returncode == 0, straight.stderr
    stopped = tmp_path / "stopped"
    with subprocess.Popen(
        _run_command(config, stopped),
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    ) as process:
        try:
            deadline = time.monotonic() + 120
            while _trained_steps(stopped / "metrics.jsonl") < 5:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "no training steps within 120 s"
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)  # to the main process alone, as Kubernetes and docker stop send it
            signalled_at = _trained_steps(stopped / "metrics.jsonl")  # at least the steps trained when it came
            _, stderr = process.communicate(timeout=120)
        finally:
            process.kill()  # a no-op once it has exited
    if process.returncode == 0:
        # The run may finish only if the signal came during its last step, once every earlier one was logged.
        assert signalled_at >= steps - 1, f"SIGTERM ignored: sent after step {signalled_at} of {steps}\n{stderr}"
        pytest.skip(f"the signal came after {signalled_at} of the {steps} steps, too late to stop the run")
    assert process.returncode == 128 + signal.SIGTERM, stderr
    checkpoints = list_checkpoints(stopped)
    assert len(checkpoints) == 1, f"expected the stop's checkpoint alone, found {checkpoints}"
    step = checkpoint_step(checkpoints[0])
    assert 5 <= step < steps and step == _trained_steps(stopped / "metrics.jsonl")
    assert "SIGTERM: stopping after the current step" in stderr
    assert f"the last checkpoint is step {step}; continue with the same command and --resume" in stderr
    resumed = subprocess.run(
        [*_run_command(config, stopped), "--resume"], cwd=REPO, env=environment, text=True, capture_output=True
    )
    assert resumed.returncode == 0, resumed.stderr
    expected = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    actual = load_file(str(stopped / "model" / "model.safetensors"))
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[key], actual[key]) for key in expected), "weights differ after the resume"


def test_a_process_exits_with_a_training_data_loader_still_open():
    """Python's exit ends DataLoader workers still running with SIGTERM: a worker that ignored it (as it ignores
    Ctrl-C) kept the process waiting for it forever (a test suite hung after its last test)."""
    script = (
        "import dataclasses, types\n"
        "from training.configs import get_config\n"
        "from training.distributed import ProcessGroup\n"
        "from training.run_data import train_clips, train_loader\n"
        "config = get_config('tiny')\n"
        "config = dataclasses.replace(config, data=dataclasses.replace(config.data, num_workers=2))\n"
        "batches = iter(train_loader(config, types.SimpleNamespace(step=0), ProcessGroup(), train_clips(config)))\n"
        "next(batches)\n"
        "KEPT = batches  # still open when the interpreter exits\n"
    )
    finished = _run_python(script)
    assert finished.returncode == 0, finished.stderr


def _run_script(prelude: str, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """``training.run --config tiny`` in a child process after ``prelude`` (which arranges a signal at a chosen
    moment), with Ctrl-C's default action."""
    arguments = ["--config", "tiny", "--val-videos", "0", "--no-progress", "--out", str(out), *flags]
    return _run_python(f"{prelude}\nfrom training.run import main\nraise SystemExit(main({arguments!r}))\n")


def _run_python(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by this Python in the repository, one thread, Ctrl-C's default action, its output captured."""
    with children_take_ctrl_c():
        return subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )


_CTRL_C_IN_EACH_WORKER_FIRST = """
import os, signal
from training import run_data
ignore_ctrl_c = run_data._prepare_data_worker
def ctrl_c_first(worker_id):
    os.kill(os.getpid(), signal.SIGINT)  # the worker's share of a terminal's Ctrl-C, before it is ignored
    ignore_ctrl_c(worker_id)
run_data._prepare_data_worker = ctrl_c_first
"""


def test_ctrl_c_while_the_data_workers_start_stops_the_run(tmp_path: Path) -> None:
    """A Ctrl-C just as a data worker is forked, in the main process (where CPython runs fork hooks, and an
    interrupt raised there was printed as "Exception ignored" and lost: the run trained on to its end) and in the
    worker before it could ignore Ctrl-C (it died, and the run failed with "DataLoader worker exited
    unexpectedly"), stops the run as any first Ctrl-C does."""
    prelude = _CTRL_C_IN_EACH_WORKER_FIRST + (
        "forked = []\n"
        "def ctrl_c_at_the_first_fork():\n"
        "    if not forked:\n"
        "        forked.append(True)\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "os.register_at_fork(after_in_parent=ctrl_c_at_the_first_fork)\n"
    )
    done = _run_script(prelude, tmp_path / "run", "--workers", "2", "--steps", "50")
    assert done.returncode == 130, done.stderr
    assert "SIGINT: stopping after the current step" in done.stderr
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "run" / "model").exists()


def test_ctrl_c_in_a_worker_before_it_ignores_ctrl_c_leaves_it_running(tmp_path: Path) -> None:
    """The worker's side alone: its share of a Ctrl-C that came before it could ignore it is held back and then
    dropped, so the run trains to its end, and says nothing of it."""
    done = _run_script(_CTRL_C_IN_EACH_WORKER_FIRST, tmp_path / "run", "--workers", "2", "--steps", "6")
    assert done.returncode == 0, done.stderr
    assert "SIGINT" not in done.stderr, done.stderr  # nor did the worker take it as the run's own stop request
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


_CTRL_C_AT_THE_LAST_CHECKPOINT = """
import os, signal
from training import loop
write_checkpoint = loop.maybe_checkpoint
def ctrl_c_at_the_last_step(config, run, *args, **kwargs):
    if run.step == config.steps:
        os.kill(os.getpid(), signal.SIGINT)
    return write_checkpoint(config, run, *args, **kwargs)
loop.maybe_checkpoint = ctrl_c_at_the_last_step
"""

_CTRL_C_AT_THE_FINAL_MODEL = """
import os, signal
from plugins.model import VideoSlotModel
save = VideoSlotModel.save_pretrained
def ctrl_c_at_the_final_model(self, directory, *args, **kwargs):
    if os.path.basename(directory) == "model":
        os.kill(os.getpid(), signal.SIGINT)
    return save(self, directory, *args, **kwargs)
VideoSlotModel.save_pretrained = ctrl_c_at_the_final_model
"""


@pytest.mark.parametrize(
    "prelude", [_CTRL_C_AT_THE_LAST_CHECKPOINT, _CTRL_C_AT_THE_FINAL_MODEL], ids=["last", "final"]
)
def test_a_signal_once_every_step_is_trained_lets_the_run_finish(tmp_path: Path, prelude: str) -> None:
    """A Ctrl-C during the last step's checkpoint or while the final model is written does not turn a run that
    trained every step into an interrupted one without ``model/``: the model is written and the run ends well."""
    done = _run_script(prelude, tmp_path / "run", "--workers", "0", "--steps", "4")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert "SIGINT: every step is trained: finishing the run" in done.stderr, done.stderr
    assert "stopping after the current step" not in done.stderr and "interrupted" not in done.stderr


def test_data_workers_end_with_a_main_process_killed_outright(tmp_path: Path) -> None:
    """A main process ended without clean-up (SIGKILL, or a second SIGTERM's default action) takes its data
    workers with it: left alone they could wait forever on a queue nobody reads, holding the run's output open."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "training.run", "--config", "tiny", "--steps", "100000", "--workers", "2"]
    command += ["--eval-every", "0", "--val-videos", "0", "--no-progress", "--out", str(out)]
    with subprocess.Popen(
        command, cwd=REPO, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"}
    ) as process:
        try:
            deadline = time.monotonic() + 120
            while _trained_steps(out / "metrics.jsonl") < 5:
                assert process.poll() is None, "the run ended early"
                assert time.monotonic() < deadline, "no training steps within 120 s"
                time.sleep(0.1)
            workers = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
            assert len(workers) == 2, workers
            process.kill()
        finally:
            process.kill()
    deadline = time.monotonic() + 4  # the workers' own check of their parent comes only every 5 s
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in workers if _is_running(int(pid))]
    for pid in alive:
        os.kill(int(pid), signal.SIGKILL)
    assert not alive, f"data workers {alive} outlived their main process"


def _is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ctrl_c_taken_by_another_thread_while_workers_start_waits_for_the_loader(tmp_path: Path) -> None:
    """Without a stop request (several ``torchrun`` processes), a Ctrl-C that another thread of the process takes
    while the data workers start raises ``KeyboardInterrupt`` once the loader is built, not inside it (where the
    half-built loader's clean-up printed an unrelated ``AttributeError``)."""
    script = (
        "import dataclasses, os, signal, threading, time, types\n"
        "from training.configs import get_config\n"
        "from training.distributed import ProcessGroup\n"
        "from training.run_data import start_batches, train_clips\n"
        "config = get_config('tiny')\n"
        "config = dataclasses.replace(config, data=dataclasses.replace(config.data, num_workers=2))\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # a thread that takes signals\n"
        "sent = []\n"
        "def ctrl_c_at_the_first_fork():\n"
        "    if not sent:\n"
        "        sent.append(True)\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "os.register_at_fork(after_in_parent=ctrl_c_at_the_first_fork)\n"
        "try:\n"
        "    start_batches(config, types.SimpleNamespace(step=0), ProcessGroup(), train_clips(config))\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
    )
    finished = _run_python(script)
    assert finished.returncode == 0 and finished.stdout.strip() == "interrupted", finished.stderr
    assert "Exception ignored" not in finished.stderr and "Error" not in finished.stderr, finished.stderr


_CTRL_C_TWICE = _CTRL_C_AT_THE_LAST_CHECKPOINT + _CTRL_C_AT_THE_FINAL_MODEL  # the first, then the second


def test_a_second_ctrl_c_while_the_final_model_is_written_stops_at_once(tmp_path: Path) -> None:
    """ "Ctrl-C again stops at once" holds after every step is trained too: the second one is not taken as a first."""
    done = _run_script(_CTRL_C_TWICE, tmp_path / "run", "--steps", "4")
    assert done.returncode == 130, done.stderr
    assert done.stderr.count("every step is trained") == 1, done.stderr
    assert not (tmp_path / "run" / "model" / "model.safetensors").exists()


def test_a_stop_requested_before_a_warm_started_run_trains_skips_its_step_0_evaluation(tmp_path: Path) -> None:
    """A Ctrl-C while the data workers start stops the run before anything else, the evaluation of its starting
    weights included (minutes with many validation videos)."""
    source = _run_script("", tmp_path / "source", "--steps", "2")
    assert source.returncode == 0, source.stderr
    prelude = (
        "import os, signal\n"
        "from training import loop\n"
        "start = loop.start_batches\n"
        "def ctrl_c_then_start(*args):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    return start(*args)\n"
        "loop.start_batches = ctrl_c_then_start\n"
    )
    flags = ("--steps", "4", "--init-from", str(tmp_path / "source" / "model"), "--val-videos", "2")
    done = _run_script(prelude, tmp_path / "run", *flags)
    assert done.returncode == 130, done.stderr
    assert "step 0:" not in done.stdout + done.stderr and not (tmp_path / "run" / "best").exists()


_WORKER_WRITING_TO_A_TOSTOP_TERMINAL = """
import os, pty, sys, termios
pid, fd = pty.fork()
if pid == 0:
    attributes = termios.tcgetattr(0)
    attributes[3] |= termios.TOSTOP  # a background process writing to this terminal gets SIGTTOU
    termios.tcsetattr(0, termios.TCSANOW, attributes)
    import torch
    from torch.utils.data import DataLoader, Dataset
    from training import run_data
    class Noisy(Dataset):
        def __len__(self):
            return 4
        def __getitem__(self, index):
            sys.stderr.write(f"a warning from the worker, item {index}\\n")
            sys.stderr.flush()
            return torch.zeros(1)
    loader = DataLoader(Noisy(), num_workers=1, worker_init_fn=run_data._prepare_data_worker, timeout=20)
    try:
        print("RESULT", sum(1 for _ in loader), "batches", flush=True)
    except Exception as error:
        print("RESULT", type(error).__name__, flush=True)
    os._exit(0)
output = b""
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    output += chunk
os.waitpid(pid, 0)
print(output.decode(errors="replace"))
"""


def test_a_data_worker_writes_to_a_terminal_set_to_stop_background_writers() -> None:
    """A worker, in a process group of its own, is a background job of the terminal: on one set to ``tostop`` its
    first warning stopped it (SIGTTOU) and the loader waited for it forever (here its 20 s timeout)."""
    finished = _run_python(_WORKER_WRITING_TO_A_TOSTOP_TERMINAL)
    assert "RESULT 4 batches" in finished.stdout, finished.stdout + finished.stderr
