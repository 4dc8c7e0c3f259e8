"""The CUDA-graph runner of the ``tensorrt`` backend: one TensorRT engine with its device buffers, its execution
contexts (one for plain runs, one per captured batch bucket, all on one block of activation memory) and its CUDA
graphs, each replay checked against a plain run at start-up. TensorRT and PyTorch's CUDA runtime are passed in or
imported lazily (see :mod:`service.backends.tensorrt_backend`, which builds and loads the engines).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from service.backends.manifest import OUTPUT_MASKS, OUTPUT_SLOTS

if TYPE_CHECKING:
    from service.backends.tensorrt_backend import BuildSpec

#: How far a CUDA graph's replay may be from a plain run of the same engine on the same inputs, checked per bucket
#: at start-up: a tenth of the export's parity bounds (1e-4 fp32, 0.1 fp16). A graph replayed against a context
#: state other than its capture's is off by far more, or not finite.
GRAPH_REPLAY_ATOL = {"fp32": 1e-5, "fp16": 1e-2}


def batch_buckets(max_batch_size: int) -> list[int]:
    """Batch sizes that get a CUDA graph: powers of two below ``max_batch_size``, and ``max_batch_size``."""
    sizes = {max_batch_size}
    size = 1
    while size < max_batch_size:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


def bucket_for(batch: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds ``batch``."""
    for size in buckets:
        if size >= batch:
            return size
    raise ValueError(f"batch {batch} exceeds the largest bucket {buckets[-1]}")


class _Bucket:
    """A captured CUDA graph and the execution context it was captured on (kept alive together)."""

    def __init__(self, context: Any, graph: Any) -> None:
        self.context = context
        self.graph = graph


class GraphRunner:
    """One TensorRT engine with its static device buffers, an execution context for plain runs and, after
    :meth:`capture`, one execution context and CUDA graph per batch bucket.

    A CUDA graph replays the kernels, shapes and addresses of its capture against the execution context's state as
    it was then: a graph captured for one input shape holds only for the context state it was captured with
    (TensorRT's and Torch-TensorRT's CUDA-graph guidance; a new shape needs a new capture). So every bucket gets
    an execution context of its own whose input shapes are set once, to that bucket, and never change again;
    the plain-run context changes shapes freely. All contexts share the input and output buffers, sized for the
    largest batch: calls are serialised (the engine's ``max_concurrency`` is 1) and run on one stream.

    Args:
        trt: the ``tensorrt`` module.
        engine: the deserialized engine.
        spec: what it was built for.
        device: the ``torch.device`` of the buffers.
        stream: the CUDA stream every run, capture and copy goes on.
    """

    def __init__(self, trt: Any, engine: Any, spec: BuildSpec, device: Any, stream: Any) -> None:
        import torch

        self._torch = torch
        self._trt = trt
        self._engine = engine
        self._stream = stream
        # One block of activation memory for all of this engine's execution contexts: by default (STATIC) each
        # context reserves the most the engine can need, so one context per CUDA-graph bucket would hold that many
        # copies. Sharing is safe because the contexts never run at once (one stream, calls serialised).
        self._scratch_bytes = int(engine.device_memory_size_v2)
        with torch.cuda.stream(stream):
            self._scratch = torch.empty(max(self._scratch_bytes, 1), dtype=torch.uint8, device=device)
        self._spec = spec
        self._context = self._new_context()
        self._inputs = list(spec.inputs)
        self._outputs = [OUTPUT_SLOTS, OUTPUT_MASKS]
        shapes: dict[str, tuple[int, ...]] = {}
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            if engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise RuntimeError(f"{spec.graph}: tensor {name!r} is not float32 in the TensorRT engine")
            dims = tuple(engine.get_tensor_shape(name))[1:]  # without the batch axis
            if any(dim < 0 for dim in dims):  # an axis the engine derives from the inputs: resolve it at the max
                self._set_shapes(self._context, spec.max_batch_size)
                dims = tuple(self._context.get_tensor_shape(name))[1:]
            shapes[name] = dims
        # Allocated (and zero-filled) on the stream every later run goes on: torch.zeros on the default stream would
        # leave nothing ordering its fill before TensorRT's first use of the buffers on this side stream.
        self._buffers: dict[str, Any] = {}
        with torch.cuda.stream(stream):
            for name, dims in shapes.items():
                self._buffers[name] = torch.zeros((spec.max_batch_size, *dims), dtype=torch.float32, device=device)
        stream.synchronize()  # set-up done before any run or capture
        self._bind(self._context)
        self._graphs: dict[int, _Bucket] = {}
        self._buckets: list[int] = []

    def capture(self, buckets: list[int]) -> None:
        """Capture one CUDA graph per bucket, each on an execution context of its own, and check that replaying
        it gives what a plain run at that batch size gives.

        Raises:
            RuntimeError: a replay differs from the plain run (by more than :data:`GRAPH_REPLAY_ATOL`) or is not
                finite; the message says to start without CUDA graphs.
        """
        torch = self._torch
        for size in buckets:
            context = self._new_context()
            self._bind(context)
            self._set_shapes(context, size)  # once: this context's shapes never change again
            self._enqueue(context)  # one run after the shape change before capturing, as TensorRT requires
            self._stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self._stream):
                self._enqueue(context)
            self._graphs[size] = _Bucket(context, graph)
            self._check_replay(size)
        self._buckets = list(buckets)

    def run(self, feeds: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Run one batch; returns ``(slots, masks)`` on the host."""
        torch = self._torch
        batch = next(iter(feeds.values())).shape[0]
        if not 1 <= batch <= self._spec.max_batch_size:
            raise ValueError(f"batch {batch} is outside the engine's profile 1..{self._spec.max_batch_size}")
        size = bucket_for(batch, self._buckets) if self._graphs else batch
        with torch.cuda.stream(self._stream):
            self._feed(feeds, batch, size)
            if size in self._graphs:
                self._graphs[size].graph.replay()
            else:
                self._set_shapes(self._context, size)
                self._enqueue(self._context)
            slots, masks = (self._buffers[name][:batch].cpu() for name in self._outputs)
        self._stream.synchronize()
        return slots.numpy(), masks.numpy()

    def _check_replay(self, size: int) -> None:
        """Compare the bucket's graph replay with a plain run of the plain-run context on the same inputs."""
        torch = self._torch
        rng = np.random.default_rng(size)
        feeds = {name: rng.random((size, *self._spec.inputs[name]), dtype=np.float32) for name in self._inputs}
        with torch.cuda.stream(self._stream):
            self._feed(feeds, size, size)
            self._set_shapes(self._context, size)
            self._enqueue(self._context)
            plain = [self._buffers[name][:size].to("cpu", copy=True) for name in self._outputs]
            for name in self._outputs:
                self._buffers[name][:size].fill_(float("nan"))  # a replay that writes nothing cannot pass
            self._graphs[size].graph.replay()
            replayed = [self._buffers[name][:size].to("cpu", copy=True) for name in self._outputs]
        self._stream.synchronize()
        limit = GRAPH_REPLAY_ATOL["fp16" if self._spec.fp16 else "fp32"]
        difference = max(_max_abs_difference(a.numpy(), b.numpy()) for a, b in zip(plain, replayed, strict=True))
        if not difference <= limit:  # NaN and infinity fail too
            raise RuntimeError(
                f"{self._spec.graph}: the CUDA graph of batch bucket {size} does not reproduce a plain TensorRT run "
                f"(max |diff| {difference:.3g}, allowed {limit:g}); start without CUDA graphs "
                "(--tensorrt-cuda-graphs off / SLOTSTREAM_TENSORRT_CUDA_GRAPHS=0)"
            )

    def _feed(self, feeds: Mapping[str, np.ndarray], batch: int, size: int) -> None:
        """Copy ``feeds`` into the input buffers; rows ``batch..size`` (a bucket's padding) are zeroed."""
        for name in self._inputs:
            buffer = self._buffers[name]
            buffer[:batch].copy_(self._torch.from_numpy(np.ascontiguousarray(feeds[name], dtype=np.float32)))
            if size > batch:
                buffer[batch:size].zero_()  # padding rows of the bucket; their outputs are dropped

    def _new_context(self) -> Any:
        """An execution context on the shared activation memory (TensorRT's USER_MANAGED allocation).

        Raises:
            RuntimeError: TensorRT could not create it.
        """
        strategy = self._trt.ExecutionContextAllocationStrategy.USER_MANAGED
        context = self._engine.create_execution_context(strategy)
        if context is None:
            raise RuntimeError(f"TensorRT could not create an execution context for the {self._spec.graph} engine")
        context.set_device_memory(self._scratch.data_ptr(), self._scratch_bytes)
        return context

    def _bind(self, context: Any) -> None:
        for name, buffer in self._buffers.items():
            context.set_tensor_address(name, buffer.data_ptr())

    def _set_shapes(self, context: Any, batch: int) -> None:
        for name in self._inputs:
            context.set_input_shape(name, (batch, *self._spec.inputs[name]))

    def _enqueue(self, context: Any) -> None:
        if not context.execute_async_v3(self._stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to run the {self._spec.graph} engine")


def _max_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference; infinite when either side is not finite."""
    difference = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(difference.max(initial=0.0)) if np.isfinite(difference).all() else math.inf
