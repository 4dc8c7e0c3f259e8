"""The parts of ``torchrun`` data parallelism that need no second process: the collective timeout, the device a
process loads a checkpoint onto, and which process's random generators a resumed process takes."""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch

from training.checkpoint import TrainerState
from training.distributed import (
    DEFAULT_TIMEOUT,
    TIMEOUT_VARIABLE,
    ProcessGroup,
    collective_timeout,
    device_of,
    shared_failure,
)


def test_the_collective_timeout_outlasts_torchs_default_and_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TIMEOUT_VARIABLE, raising=False)
    assert collective_timeout() == DEFAULT_TIMEOUT > timedelta(minutes=30)
    monkeypatch.setenv(TIMEOUT_VARIABLE, "240")
    assert collective_timeout() == timedelta(hours=4)


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "two hours", ""])
def test_a_bad_collective_timeout_is_refused_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(TIMEOUT_VARIABLE, value)
    with pytest.raises(ValueError, match=f"{TIMEOUT_VARIABLE} must be a number of minutes above 0"):
        collective_timeout()


def test_each_process_of_a_cuda_job_loads_onto_its_own_gpu() -> None:
    """safetensors reads ``"cuda"`` as the first GPU: every process would put its copy there."""
    assert device_of("cuda", ProcessGroup(rank=3, world_size=4, local_rank=1)) == "cuda:1"
    assert device_of("cuda", ProcessGroup()) == "cuda"
    assert device_of("cpu", ProcessGroup(rank=1, world_size=2, local_rank=1)) == "cpu"


def _state(process_rng: list[dict[str, object]] | None) -> TrainerState:
    return TrainerState(step=1, optimizer={}, scheduler={}, rng={"torch": torch.zeros(1)}, process_rng=process_rng)


def test_a_process_resumes_with_its_own_generators_or_else_rank_0s() -> None:
    mine = [{"torch": torch.full((1,), float(rank))} for rank in range(2)]
    assert _state(mine).rng_of(1) is mine[1]
    older = _state(None)  # written before every process's generators were recorded
    assert older.rng_of(1) is older.rng


def test_an_error_whose_chain_loops_is_told_from_a_shared_failure() -> None:
    """An error re-raised while handling one raised from it links back to itself: the search ends."""
    first, second = ValueError("first"), ValueError("second")
    first.__context__, second.__context__ = second, first
    assert shared_failure(first) is None
