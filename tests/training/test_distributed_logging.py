"""Under ``torchrun`` each process trains on its own clips: the logged loss terms are the means over the
processes, not rank 0's share (two gloo processes on the CPU, started by ``torchrun --standalone``, which picks a
free port itself: a port chosen here and passed on could be taken by another process meanwhile)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from torchrun_jobs import TORCHRUN_TWO_PROCESSES, torchrun_env

from plugins import build_plugin_manager
from plugins.interfaces import Loss
from plugins.types import VideoOutput
from training.config import LossTerm
from training.configs import get_config
from training.loop import fit

REPO = Path(__file__).resolve().parents[2]


class RankMarker(Loss):
    """A loss whose value is the process's rank (weight 0: it only shows what is logged)."""

    name = "rank_marker"

    def forward(self, output: VideoOutput, progress: float) -> torch.Tensor:
        """The rank of this process, as a scalar."""
        del output, progress  # Unused.
        return torch.tensor(float(os.environ["RANK"]))


def _train(run_dir: str) -> None:
    """One training process, in the environment torchrun gives it (this file run as a script)."""
    torch.set_num_threads(1)
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.add_loss(RankMarker)
    config = get_config("tiny")
    data = dataclasses.replace(config.data, val_videos=0)
    config = dataclasses.replace(
        config, steps=2, log_every=1, data=data, losses=[*config.losses, LossTerm("rank_marker", weight=0.0)]
    )
    fit(config, run_dir, progress=False, registry=registry)


def test_logged_loss_terms_are_the_means_over_the_processes(tmp_path: Path) -> None:
    """Two processes log rank_marker as (0 + 1) / 2 at every step, and the run records two processes."""
    run_dir = tmp_path / "run"
    command = [*TORCHRUN_TWO_PROCESSES, __file__, str(run_dir)]
    env = torchrun_env(tmp_path)
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [line for line in lines if line["kind"] == "train"]
    assert [line["step"] for line in train] == [1, 2]
    assert all(line["rank_marker"] == 0.5 for line in train), train  # (0 + 1) / 2, not rank 0's 0
    environment = json.loads((run_dir / "environment.json").read_text())["segments"]
    assert [segment["processes"] for segment in environment] == [2]


if __name__ == "__main__":
    _train(sys.argv[1])
