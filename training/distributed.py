"""Multi-process data parallelism under ``torchrun`` (DistributedDataParallel; gloo on CPU, nccl on CUDA): joining
the process group, wrapping the model so its gradients are averaged, and the collective operations the training
loop uses (means of logged values, gathering to the main process, failing together)."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import pickle
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

TIMEOUT_VARIABLE = "SLOTSTREAM_COLLECTIVE_TIMEOUT_MIN"
"""Environment variable: minutes a process waits in a collective operation for the others (default
:data:`DEFAULT_TIMEOUT`) before the job fails. The other processes wait at the next checkpoint while the main
process evaluates alone, so it must exceed the longest evaluation during training."""
DEFAULT_TIMEOUT = timedelta(hours=2)
"""The collective timeout without :data:`TIMEOUT_VARIABLE` (torch's own default, 30 minutes for gloo, is shorter
than an evaluation on whole long videos may take)."""


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the job.

    Attributes:
        rank: global rank (0 when not distributed).
        world_size: number of processes (1 when not distributed).
        local_rank: rank on this node (selects the GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """True under ``torchrun`` with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """The process that logs, evaluates and writes checkpoints."""
        return self.rank == 0


def init_from_environment(device: str) -> ProcessGroup:
    """Join the process group ``torchrun`` describes in the environment, if any.

    Uses the gloo backend on the CPU and nccl on CUDA (each process on the GPU of its ``local_rank``), with the
    timeout :func:`collective_timeout` gives; a single process needs no group.

    Raises:
        ValueError: :data:`TIMEOUT_VARIABLE` is set to something other than a positive number of minutes.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    group = ProcessGroup(int(os.environ.get("RANK", "0")), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if group.distributed and not dist.is_initialized():
        timeout = collective_timeout()
        if device == "cuda":
            torch.cuda.set_device(group.local_rank)
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo", timeout=timeout)
    return group


def collective_timeout() -> timedelta:
    """How long a collective operation waits for every process: :data:`TIMEOUT_VARIABLE` minutes when it is set,
    else :data:`DEFAULT_TIMEOUT`.

    Raises:
        ValueError: the variable is not a finite number of minutes above 0.
    """
    text = os.environ.get(TIMEOUT_VARIABLE)
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        minutes = float(text)
    except ValueError:
        minutes = math.nan
    if not (math.isfinite(minutes) and minutes > 0):
        raise ValueError(f"{TIMEOUT_VARIABLE} must be a number of minutes above 0, got {text!r}")
    return timedelta(minutes=minutes)


def device_of(device: str, group: ProcessGroup) -> str:
    """The device this process's tensors go to, for an API that takes ``"cuda"`` for the first GPU rather than
    the current one (``safetensors``' loaders): ``cuda:<local_rank>`` for a process of a CUDA job, else ``device``."""
    return f"cuda:{group.local_rank}" if device == "cuda" and group.distributed else device


def data_parallel(model: nn.Module, device: str, group: ProcessGroup) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel, called as ``model`` is and returning what it returns.

    DistributedDataParallel averages the gradients over the processes during ``backward``, here with a static
    graph: the first step records which parameters the loss reaches (with one-frame clips the transition is
    unused). That first step's averaging is started from the tensors of the output, which it finds through
    :mod:`torch.utils._pytree`; that does not look inside dataclasses such as :class:`~plugins.types.VideoOutput`,
    and seeing no tensor, DistributedDataParallel would never average anything (each process would train a model
    of its own). So the wrapped model returns the output's tensors in a tuple (:class:`_TensorLeaves`), and the
    output is put back together outside DistributedDataParallel. The set of parameters the loss reaches must be
    the same at every step, which holds for a fixed config (the schedules change loss weights and where
    gradients stop, not which parameters are used).
    """
    ids = [group.local_rank] if device == "cuda" else None
    return _Reassembled(DistributedDataParallel(_TensorLeaves(model), device_ids=ids, static_graph=True))


@dataclass(frozen=True)
class _Hole:
    """Where the ``index``-th tensor of an output was (:func:`_split`)."""

    index: int


class _TensorLeaves(nn.Module):
    """``module``, returning ``(skeleton, tensors)``: the tensors of its output as a tuple, and the output with
    each of them replaced by a :class:`_Hole` (:func:`_split`), which :func:`_fill` puts them back into."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> tuple[Any, tuple[torch.Tensor, ...]]:
        """Run ``module`` and split its output."""
        tensors: list[torch.Tensor] = []
        skeleton = _split(self.module(*args, **kwargs), tensors)
        return skeleton, tuple(tensors)


class _Reassembled(nn.Module):
    """A DistributedDataParallel of a :class:`_TensorLeaves`, returning the output of the model inside it with
    the tensors DistributedDataParallel handed back (through its own autograd function) in place."""

    def __init__(self, parallel: DistributedDataParallel) -> None:
        super().__init__()
        self.parallel = parallel

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped model's output."""
        skeleton, tensors = self.parallel(*args, **kwargs)
        return _fill(skeleton, tensors)


def _split(value: Any, tensors: list[torch.Tensor]) -> Any:
    """``value`` with every tensor in it (inside dataclasses, lists, tuples and dicts) appended to ``tensors`` and
    replaced by a :class:`_Hole`; anything else is kept as it is. ``value`` itself is not changed."""
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return _Hole(len(tensors) - 1)
    return _map(value, lambda item: _split(item, tensors))


def _fill(skeleton: Any, tensors: tuple[torch.Tensor, ...]) -> Any:
    """Inverse of :func:`_split`: ``skeleton`` with each :class:`_Hole` replaced by its tensor."""
    if isinstance(skeleton, _Hole):
        return tensors[skeleton.index]
    return _map(skeleton, lambda item: _fill(item, tensors))


def _map(value: Any, function: Callable[[Any], Any]) -> Any:
    """A copy of the container ``value`` with ``function`` applied to each item (each field of a dataclass
    instance); ``value`` itself when it is no container."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        result = copy.copy(value)
        for field in dataclasses.fields(value):
            object.__setattr__(result, field.name, function(getattr(value, field.name)))
        return result
    if isinstance(value, list):
        return [function(item) for item in value]
    if isinstance(value, tuple):
        items = [function(item) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)  # a named tuple, or not
    if isinstance(value, dict):
        return {key: function(item) for key, item in value.items()}
    return value


def mean_across_processes(group: ProcessGroup, values: dict[str, float], device: str) -> dict[str, float]:
    """The mean of each of ``values`` over the processes, with one ``all_reduce`` of a small tensor; ``values``
    itself when not distributed.

    Every process must call it at the same step with the same keys (a collective operation: a process that
    does not call it leaves the others waiting).

    Args:
        group: this process's place in the job.
        values: this process's scalars (its share of the batch's loss terms, say).
        device: where the collective runs: ``"cpu"`` (gloo) or ``"cuda"`` (nccl needs CUDA tensors).
    """
    if not group.distributed:
        return values
    keys = sorted(values)  # the same order on every process
    summed = torch.tensor([float(values[key]) for key in keys], dtype=torch.float64, device=device)  # [K]
    with _lent_to_backend([summed]):
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    return dict(zip(keys, (summed / group.world_size).tolist(), strict=True))


def gather_to_main(group: ProcessGroup, value: Any) -> list[Any] | None:
    """Every process's ``value`` (picklable), by rank, on the main process; ``None`` on the others. A collective
    operation (every process calls it); ``[value]`` when not distributed."""
    if not group.distributed:
        return [value]
    gathered = _all_gather_objects(group, value)
    return gathered if group.is_main else None


def _all_gather_objects(group: ProcessGroup, value: Any) -> list[Any]:
    """Every process's ``value`` (picklable), by rank, on every process: ``dist.all_gather_object``, with tensors
    of its own so that it returns only once the backend has let go of them (:func:`_lent_to_backend`). A
    collective operation."""
    device = _collective_device()
    payload = torch.frombuffer(bytearray(pickle.dumps(value)), dtype=torch.uint8)
    length = torch.tensor([payload.numel()], dtype=torch.int64, device=device)
    lengths = [torch.zeros_like(length) for _ in range(group.world_size)]
    with _lent_to_backend([length, *lengths]):
        dist.all_gather(lengths, length)
    sizes = [int(size.item()) for size in lengths]
    sent = torch.zeros(max(sizes), dtype=torch.uint8, device=device)
    sent[: payload.numel()] = payload.to(device)
    received = [torch.empty_like(sent) for _ in range(group.world_size)]
    with _lent_to_backend([sent, *received]):
        dist.all_gather(received, sent)
    return [pickle.loads(chunk[:size].cpu().numpy().tobytes()) for chunk, size in zip(received, sizes, strict=True)]


def _collective_device() -> torch.device:
    """Where the tensors of a collective operation on objects go: the current GPU under nccl, else the CPU."""
    if dist.get_backend() == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


_LET_GO_TIMEOUT_S = 60.0
"""Seconds :func:`_lent_to_backend` waits at most for gloo to let go of a collective's tensors (it takes
microseconds; a process held up longer carries on as before)."""


@contextmanager
def _lent_to_backend(tensors: list[torch.Tensor]) -> Iterator[None]:
    """Run a collective operation on ``tensors`` (each held by Python alone before it), then, under gloo, wait until
    the backend has let go of them.

    A collective's work keeps its tensors, and gloo's worker thread that ran it may release the work after the
    operation has returned here. Releasing a tensor that has a Python object takes the GIL (torch keeps that
    object alive while C++ holds the tensor). A worker thread that asks for the GIL once the interpreter has
    begun to shut down is ended by Python from inside the work's C++ destructor, which aborts the process
    ("terminate called without an active exception", SIGABRT). A process that leaves right after its last
    collective operation (every process of a failure they agreed on, or of a finished run) was so aborted now
    and then, and torchrun named it as the job's root cause. Waiting here, with the GIL released, until the
    worker has let go (no C++ reference to each tensor left but its Python object's, and the Python references
    back to what they were) leaves no worker thread anything to do with Python once the interpreter ends.
    nccl is not waited for: torch's nccl backend has a shutdown, which :func:`shutdown` reaches; gloo has none,
    and its worker threads live on until the process ends.
    """
    before = _python_references(tensors)
    yield
    if dist.get_backend() != dist.Backend.GLOO:
        return
    deadline = time.monotonic() + _LET_GO_TIMEOUT_S
    while not _let_go(tensors, before) and time.monotonic() < deadline:
        time.sleep(0.001)  # lets the worker thread take the GIL


def _python_references(tensors: list[torch.Tensor]) -> list[int]:
    return [sys.getrefcount(tensor) for tensor in tensors]


def _let_go(tensors: list[torch.Tensor], before: list[int]) -> bool:
    """Whether each of ``tensors`` is held by its Python object alone (no C++ reference to it but that object's)
    and C++ holds that object no longer (its Python references are back to ``before``)."""
    held_by_python_alone = all(tensor._use_count() == 1 for tensor in tensors)  # type: ignore[attr-defined]
    return held_by_python_alone and all(
        now <= then for now, then in zip(_python_references(tensors), before, strict=True)
    )


@contextmanager
def fail_together(group: ProcessGroup) -> Iterator[None]:
    """Run a block every process takes part in (one of them writing a checkpoint, say) so that it ends the same
    way on all of them: when it raised on any process, every process raises, a failed one its own error and the
    others a copy of the lowest failed rank's (same type and message), so that no process runs on into a
    collective operation the failed ones never join. :func:`shared_failure` tells such an error, and the rank
    that met it. A collective operation at the end of the block (every process runs the block, and none starts
    another collective operation inside it); when not distributed, the block runs as it is.
    """
    if not group.distributed:
        yield
        return
    try:
        yield
    except Exception as error:
        _agree(group, error)
        raise
    _agree(group, None)


def _agree(group: ProcessGroup, error: Exception | None) -> None:
    """Gather every process's ``error`` (None: it succeeded) and raise as :func:`fail_together` says (a failed
    process's own error is raised by the caller, with its traceback)."""
    errors: list[Exception | None] = _all_gather_objects(group, _picklable(error))
    failed = [rank for rank, failure in enumerate(errors) if failure is not None]
    if not failed:
        return
    raised = error if error is not None else errors[failed[0]]
    assert raised is not None
    setattr(raised, _FAILED_ON, failed[0])
    if raised is not error:
        raise raised


def _picklable(error: Exception | None) -> Exception | None:
    """``error``, or a ``RuntimeError`` with its type and message when it cannot be pickled (to send it)."""
    if error is None:
        return None
    try:
        pickle.dumps(error)
    except Exception:  # any failure to pickle: send what it says instead
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


_FAILED_ON = "_slotstream_failed_on"


def shared_failure(error: BaseException) -> int | None:
    """The rank that met ``error`` when every process raised it (:func:`fail_together`; also when ``error`` was
    raised from such an error), else ``None``: this process met it on its own, as far as it knows."""
    seen: BaseException | None = error
    visited: set[int] = set()  # a chain may loop (an error re-raised while handling one raised from it)
    while seen is not None and id(seen) not in visited:
        visited.add(id(seen))
        rank = getattr(seen, _FAILED_ON, None)
        if isinstance(rank, int):
            return rank
        seen = seen.__cause__ or seen.__context__
    return None


_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "remote process exited")
"""What gloo (``pair.cc``) and NCCL say when a collective operation finds that another process of the group is gone."""


def peer_gone(error: BaseException) -> bool:
    """Whether ``error`` is a collective operation (a gradient exchange) finding another process of the group gone:
    stopped on an error of its own, which it reports (:func:`fail_together` covers the errors met where the
    processes agree), or lost with its node."""
    return isinstance(error, RuntimeError) and any(words in str(error) for words in _PEER_GONE)


def shutdown(group: ProcessGroup) -> None:
    """Leave the process group."""
    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()
