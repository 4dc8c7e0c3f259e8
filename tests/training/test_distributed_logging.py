"""Under ``torchrun`` each process trains on its own clips: the logged loss terms are the means over the
processes, not rank 0's share (two gloo processes on the CPU, started as torchrun would start them)."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing

from plugins import build_plugin_manager
from plugins.interfaces import Loss
from plugins.types import VideoOutput
from training.config import LossTerm
from training.configs import get_config
from training.loop import fit


class RankMarker(Loss):
    """A loss whose value is the process's rank (weight 0: it only shows what is logged)."""

    name = "rank_marker"

    def forward(self, output: VideoOutput, progress: float) -> torch.Tensor:
        """The rank of this process, as a scalar."""
        del output, progress  # Unused.
        return torch.tensor(float(os.environ["RANK"]))


def _train(rank: int, world_size: int, port: int, run_dir: str) -> None:
    """One training process, with the environment torchrun gives it."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.add_loss(RankMarker)
    config = get_config("tiny")
    data = dataclasses.replace(config.data, val_videos=0)
    config = dataclasses.replace(
        config, steps=2, log_every=1, data=data, losses=[*config.losses, LossTerm("rank_marker", weight=0.0)]
    )
    fit(config, run_dir, progress=False, registry=registry)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_logged_loss_terms_are_the_means_over_the_processes(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(_train, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [line for line in lines if line["kind"] == "train"]
    assert [line["step"] for line in train] == [1, 2]
    assert all(line["rank_marker"] == 0.5 for line in train), train  # (0 + 1) / 2, not rank 0's 0
    environment = json.loads((tmp_path / "environment.json").read_text())["segments"]
    assert [segment["processes"] for segment in environment] == [2]
