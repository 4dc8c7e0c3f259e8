"""The ``tensorrt`` backend: TensorRT engines built from the exported ONNX graphs, run on an NVIDIA GPU.

Everything slow happens in :func:`load_engine`, which the server calls before it listens, so a TensorRT build
never runs on a live request:

1. Each graph of the export directory gets an engine with one optimisation profile over batch sizes
   1..``--max-batch-size`` (every size the micro-batcher can form), fp16 when the export asked for it
   (``python -m training.export --fp16``) or ``SLOTSTREAM_TENSORRT_FP16`` says so.
2. Engines are cached on disk, keyed by the graph's hash, the TensorRT version, the GPU model, the precision
   and the profile, so a restart loads them in seconds. TensorRT's timing cache is persisted next to them, one
   file per TensorRT version and GPU model (its timings hold only for the device and version that measured
   them), and makes rebuilds of changed graphs faster. ``python -m training.export --tensorrt`` fills the
   cache ahead of time.
3. With ``SLOTSTREAM_TENSORRT_CUDA_GRAPHS=1``, one CUDA graph per batch bucket (powers of two and the
   maximum) is captured, each on an execution context of its own whose shapes stay at that bucket (a graph
   holds only for the context state it was captured with), and each replay is checked against a plain run at
   start-up; a batch is padded up to its bucket and the graph replayed. The graphs are free of control flow
   (unrolled Slot Attention), which capture requires.
4. The export's TensorRT parity record names the build it checked (:class:`EngineBuild`); engines built for
   another precision, ``--max-batch-size``, GPU or TensorRT version are served with a warning that nobody
   compared them with PyTorch, and engines whose check failed are refused.

Settings (:class:`TensorRTOptions`) are part of the server's ``ServiceConfig``, as flags or as the same names
in ``SLOTSTREAM_*`` variables; library callers that pass no options get the variables read by
:meth:`TensorRTOptions.from_environ`:

- ``--tensorrt-fp16`` / ``SLOTSTREAM_TENSORRT_FP16``: build fp16 engines (default: the export's precision);
- ``--tensorrt-cache-dir`` / ``SLOTSTREAM_TENSORRT_CACHE_DIR``: engine and timing caches (default
  ``<model dir>/tensorrt``; must be writable);
- ``--tensorrt-cuda-graphs`` / ``SLOTSTREAM_TENSORRT_CUDA_GRAPHS``: capture CUDA graphs (default off);
- ``--tensorrt-workspace-mb`` / ``SLOTSTREAM_TENSORRT_WORKSPACE_MB``: builder workspace limit (default 1024).

``tensorrt`` is imported only here, lazily: without it (or without a GPU) the backend refuses to start and
says to ``pip install -e '.[gpu]'``. Device buffers, the stream and CUDA graphs come from PyTorch's CUDA
runtime, so no other CUDA binding is needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plugins.files import write_atomically
from service.backends.onnx_backend import (
    DEFAULT_CACHE_SUBDIR,
    GPU_EXTRA,
    env_values,
    graph_inputs,
    manifest_card,
    prepare_cache_dir,
)
from service.config import parse_bool
from service.engine import BackendUnavailable, Engine, EngineOutput, ModelCard
from training.export.manifest import FIRST_STEP, OUTPUT_MASKS, OUTPUT_SLOTS, STEP, Manifest, read_manifest

_log = logging.getLogger(__name__)

NEEDS_GPU = f"needs an NVIDIA GPU and TensorRT ({GPU_EXTRA})"
TIMING_CACHE_PREFIX = "timing-"
#: How far a CUDA graph's replay may be from a plain run of the same engine on the same inputs, checked per bucket
#: at start-up: a tenth of the export's parity bounds (1e-4 fp32, 0.1 fp16). A graph replayed against a context
#: state other than its capture's is off by far more, or not finite.
GRAPH_REPLAY_ATOL = {"fp32": 1e-5, "fp16": 1e-2}


@dataclass(frozen=True)
class TensorRTOptions:
    """TensorRT settings (see the module docstring for the environment variables).

    Attributes:
        fp16: build fp16 engines; ``None`` follows the export's precision.
        cache_dir: engine and timing caches; ``None`` is ``<model dir>/tensorrt``.
        cuda_graphs: capture one CUDA graph per batch bucket at start-up.
        workspace_mb: builder workspace limit.
    """

    fp16: bool | None = None
    cache_dir: Path | None = None
    cuda_graphs: bool = False
    workspace_mb: int = 1024

    def __post_init__(self) -> None:
        if self.workspace_mb < 1:
            raise ValueError(f"workspace_mb must be >= 1, got {self.workspace_mb}")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> TensorRTOptions:
        """Read the ``SLOTSTREAM_TENSORRT_*`` variables.

        Raises:
            ValueError: a variable does not parse (the message names it).
        """
        values = env_values(
            os.environ if environ is None else environ,
            {
                "fp16": ("TENSORRT_FP16", parse_bool),
                "cache_dir": ("TENSORRT_CACHE_DIR", Path),
                "cuda_graphs": ("TENSORRT_CUDA_GRAPHS", parse_bool),
                "workspace_mb": ("TENSORRT_WORKSPACE_MB", int),
            },
        )
        return cls(**values)


@dataclass(frozen=True)
class BuildSpec:
    """What an engine is built for; its :meth:`key` names the cached engine file.

    Attributes:
        graph: ``first_step`` or ``step``.
        graph_sha256: digest of the ONNX file.
        inputs: input name -> shape without the batch axis.
        max_batch_size: the profile covers batch sizes 1 to this.
        fp16: fp16 kernels allowed.
        tf32: TF32 kernels allowed. TensorRT enables them by default on Ampere and newer GPUs; their 10-bit
            mantissa would break an fp32 engine's parity, so fp32 engines are built without them.
        tensorrt_version: TensorRT's version.
        gpu: the GPU's name and compute capability.
    """

    graph: str
    graph_sha256: str
    inputs: dict[str, tuple[int, ...]]
    max_batch_size: int
    fp16: bool
    tensorrt_version: str
    gpu: str
    tf32: bool = False

    def key(self) -> str:
        """A digest of every field: engines are reused only for an identical spec."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def engine_path(self, cache_dir: Path) -> Path:
        """Where the engine for this spec is cached."""
        precision = "fp16" if self.fp16 else "fp32"
        return cache_dir / f"{self.graph}-b{self.max_batch_size}-{precision}-{self.key()}.engine"

    def timing_cache_path(self, cache_dir: Path) -> Path:
        """Where TensorRT's timing cache for this spec's TensorRT version and GPU is kept (shared by graphs)."""
        device = hashlib.sha256(f"{self.tensorrt_version} {self.gpu}".encode()).hexdigest()[:16]
        return cache_dir / f"{TIMING_CACHE_PREFIX}{device}.cache"


@dataclass(frozen=True)
class EngineBuild:
    """What the engines of one load were built for: the fields of :class:`BuildSpec` both graphs share (the graphs
    themselves are pinned by the manifest's digests, which every load checks).

    ``python -m training.export --tensorrt`` records it with the engines' parity (:meth:`to_record`), so a server
    can tell whether the engines it builds are the ones the export compared with PyTorch
    (:func:`tensorrt_parity_warning`): another ``--max-batch-size``, GPU or TensorRT version gives other engines.

    Attributes:
        precision: ``fp16`` or ``fp32``.
        max_batch_size: the optimisation profile covers batch sizes 1 to this.
        tensorrt_version: TensorRT's version.
        gpu: the GPU's name and compute capability.
        tf32: TF32 kernels allowed.
    """

    precision: str
    max_batch_size: int
    tensorrt_version: str
    gpu: str
    tf32: bool

    @classmethod
    def of(cls, spec: BuildSpec) -> EngineBuild:
        """The build of ``spec``."""
        precision = "fp16" if spec.fp16 else "fp32"
        return cls(precision, spec.max_batch_size, spec.tensorrt_version, spec.gpu, spec.tf32)

    def to_record(self) -> dict[str, Any]:
        """The build as the JSON object a parity record keeps."""
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> EngineBuild | None:
        """Parse :meth:`to_record` output; ``None`` for an empty or incomplete record (an export made before
        builds were recorded)."""
        names = [field.name for field in dataclasses.fields(cls)]
        if any(name not in record for name in names):
            return None
        return cls(**{name: record[name] for name in names})

    def differences(self, checked: EngineBuild) -> list[str]:
        """What differs from ``checked``, one phrase per field (empty when nothing does)."""
        labels = {
            "precision": "precision",
            "max_batch_size": "--max-batch-size",
            "tensorrt_version": "TensorRT",
            "gpu": "GPU",
            "tf32": "TF32",
        }
        ours, theirs = dataclasses.asdict(self), dataclasses.asdict(checked)
        return [
            f"{label} {ours[name]} (the export checked {theirs[name]})"
            for name, label in labels.items()
            if ours[name] != theirs[name]
        ]


def cached_engines(cache_dir: Path, precision: str) -> list[Path]:
    """The engines of ``precision`` (``fp16`` or ``fp32``) cached in ``cache_dir`` (named by
    :meth:`BuildSpec.engine_path`)."""
    return sorted(cache_dir.glob(f"*-{precision}-*.engine"))


def parse_cuda_device(device: str) -> int:
    """``cuda`` / ``cuda:N`` -> ``N``.

    Raises:
        BackendUnavailable: another device (TensorRT runs only on NVIDIA GPUs).
    """
    kind, _, index = device.strip().lower().partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise BackendUnavailable(
            f"--device {device!r}: the tensorrt backend runs on an NVIDIA GPU; use --device cuda or cuda:N "
            "(or --backend onnx / torch on a CPU)"
        )
    return int(index or 0)


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


def import_tensorrt() -> Any:
    """``import tensorrt``, or a :class:`BackendUnavailable` naming the ``gpu`` extra."""
    try:
        import tensorrt
    except ImportError as error:
        raise BackendUnavailable(f"the tensorrt backend {NEEDS_GPU}: the tensorrt package is not installed") from error
    return tensorrt


class _Bucket:
    """A captured CUDA graph and the execution context it was captured on (kept alive together)."""

    def __init__(self, context: Any, graph: Any) -> None:
        self.context = context
        self.graph = graph


class _GraphRunner:
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


class TensorRTEngine(Engine):
    """The two graphs as TensorRT engines on one GPU.

    Args:
        first: runner of ``first_step``.
        step: runner of ``step``.
        card: the model card.
        build: what the engines were built for (the exporter records it with their parity).
    """

    def __init__(self, first: _GraphRunner, step: _GraphRunner, card: ModelCard, build: EngineBuild) -> None:
        self.card = card
        self.build = build
        self._runners: tuple[_GraphRunner, _GraphRunner] | None = (first, step)

    def first_step(self, frames: np.ndarray) -> EngineOutput:
        """See :meth:`Engine.first_step`."""
        slots, masks = self._live()[0].run({"frames": frames})
        return EngineOutput(slots=slots, masks=masks, state=slots.copy())

    def step(self, frames: np.ndarray, state: np.ndarray) -> EngineOutput:
        """See :meth:`Engine.step`."""
        slots, masks = self._live()[1].run({"frames": frames, "prev_slots": state})
        return EngineOutput(slots=slots, masks=masks, state=slots.copy())

    def close(self) -> None:
        """Drop the engines, their buffers and graphs."""
        self._runners = None

    def _live(self) -> tuple[_GraphRunner, _GraphRunner]:
        if self._runners is None:
            raise RuntimeError("the tensorrt engine is closed")
        return self._runners


def load_engine(
    model_dir: Path,
    *,
    name: str,
    device: str,
    max_batch_size: int,
    options: TensorRTOptions | Mapping[str, Any] | None = None,
    check_parity: bool = True,
) -> TensorRTEngine:
    """Load (building and caching if needed) the TensorRT engines of the export directory ``model_dir``.

    Args:
        model_dir: an export directory (``manifest.json``, ``first_step.onnx``, ``step.onnx``).
        name: the model's name.
        device: ``cuda`` or ``cuda:N``.
        max_batch_size: largest batch; the optimisation profile covers 1 to this.
        options: TensorRT settings, or the keyword arguments of :class:`TensorRTOptions` (what the server passes,
            from its ``ServiceConfig``); ``None`` reads them from the environment.
        check_parity: refuse engines whose parity check at export failed, and warn about engines the export did
            not check (no check, another precision, or another build: ``--max-batch-size``, GPU or TensorRT
            version); off for the exporter, which loads the engines to check them.

    Raises:
        BackendUnavailable: not a CUDA device, no GPU visible, TensorRT missing, the cache not writable, or
            (with ``check_parity``) the engines of this precision failed the export's parity check.
        ManifestError: ``model_dir`` is not an export directory (a ``ValueError``).
        RuntimeError: TensorRT could not parse or build a graph (its messages are included), or (with CUDA
            graphs) a bucket's graph replay does not reproduce a plain run.
    """
    index = parse_cuda_device(device)
    options = _options(options)
    manifest = read_manifest(model_dir, verify_graphs=True)
    fp16 = manifest.precision == "fp16" if options.fp16 is None else options.fp16
    if check_parity:  # a failed check refuses before anything looks for TensorRT or a GPU
        check_tensorrt_parity(manifest, model_dir, "fp16" if fp16 else "fp32")
    trt = import_tensorrt()
    import torch

    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        raise BackendUnavailable(
            f"--device {device}: no such CUDA device is visible; the tensorrt backend {NEEDS_GPU}"
        )
    torch.cuda.set_device(index)
    cache_dir = prepare_cache_dir(options.cache_dir or model_dir / DEFAULT_CACHE_SUBDIR)
    gpu = f"{torch.cuda.get_device_name(index)} sm_{''.join(map(str, torch.cuda.get_device_capability(index)))}"
    specs = [
        BuildSpec(
            graph=graph,
            graph_sha256=manifest.graphs[graph].sha256,
            inputs=graph_inputs(manifest, graph),
            max_batch_size=max_batch_size,
            fp16=fp16,
            tensorrt_version=str(trt.__version__),
            gpu=gpu,
            tf32=fp16,  # fp16 engines have looser parity bounds; fp32 engines stay fp32
        )
        for graph in (FIRST_STEP, STEP)
    ]
    build = EngineBuild.of(specs[0])
    warning = tensorrt_parity_warning(manifest, model_dir, build) if check_parity else None
    if warning:  # only once TensorRT and the GPU are there: engines that cannot load need no warning
        _log.warning("%s", warning)
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    stream = torch.cuda.Stream(device=index)  # type: ignore[no-untyped-call]
    runners = []
    for spec in specs:
        engine = _cached_engine(trt, logger, runtime, model_dir, manifest, spec, cache_dir, options.workspace_mb)
        runner = _GraphRunner(trt, engine, spec, torch.device("cuda", index), stream)
        if options.cuda_graphs:
            runner.capture(batch_buckets(max_batch_size))
        runners.append(runner)
    card = manifest_card(manifest, name, "tensorrt", f"cuda:{index}", max_batch_size)
    return TensorRTEngine(runners[0], runners[1], card, build)


def check_tensorrt_parity(manifest: Manifest, model_dir: Path, precision: str) -> str | None:
    """Refuse engines of a precision whose parity check failed at export; say when engines of ``precision``
    were never checked (an export without ``--tensorrt``, or one checked at the other precision).

    The refusal comes before anything looks for TensorRT or a GPU; the caller logs the returned warning only once
    those are there, so a machine without them is not told about engines it cannot load anyway.

    Returns:
        The warning to log when the engines were not checked, else ``None``.

    Raises:
        BackendUnavailable: the export's TensorRT check at ``precision`` failed.
    """
    report = manifest.parity.get("tensorrt")  # measured at export, at the export's precision
    if report is None or manifest.precision != precision:
        return (
            f"the {precision} TensorRT engines of {model_dir} were not compared with PyTorch at export (python -m "
            f"training.export --tensorrt{' --fp16' if precision == 'fp16' else ''} checks them)"
        )
    if not report.passed:
        raise BackendUnavailable(
            f"{model_dir}: its {precision} TensorRT engines failed the export's parity check ({report.runtime}: "
            f"slots max |diff| {report.slots_max_abs:.3g}, segmentations agree on {report.argmax_agreement:.3%}); "
            "serve it with --backend torch, or --backend onnx on --device cpu or cuda, or export again (for example "
            "without --fp16)"
        )
    return None


def tensorrt_parity_warning(manifest: Manifest, model_dir: Path, build: EngineBuild) -> str | None:
    """Whether the engines built for ``build`` are the ones the export compared with PyTorch.

    They are when the export's TensorRT parity record is of ``build.precision`` and records the same build
    (:class:`EngineBuild`: precision, ``--max-batch-size``, TensorRT version, GPU, TF32). Anything else builds
    engines nobody compared with PyTorch, which the server serves with this warning (the README's promise).

    Returns:
        The warning to log, naming what differs, or ``None`` when the engines are the checked ones.

    Raises:
        BackendUnavailable: the export's TensorRT check at ``build.precision`` failed.
    """
    unchecked = check_tensorrt_parity(manifest, model_dir, build.precision)
    if unchecked is not None:
        return unchecked
    report = manifest.parity["tensorrt"]
    checked = EngineBuild.from_record(report.build)
    again = (
        f"python -m training.export --tensorrt{' --fp16' if build.precision == 'fp16' else ''} --max-batch-size "
        f"{build.max_batch_size} on this GPU and TensorRT checks them"
    )
    if checked is None:
        return (
            f"the TensorRT parity record of {model_dir} does not say which engines it checked (an export made before "
            f"builds were recorded): the {build.precision} engines built for --max-batch-size {build.max_batch_size} "
            f"on {build.gpu} with TensorRT {build.tensorrt_version} may not be those; {again}"
        )
    differences = build.differences(checked)
    if differences:
        return (
            f"the {build.precision} TensorRT engines built for this server are not those the export of {model_dir} "
            f"compared with PyTorch: {'; '.join(differences)}. They are served unchecked; {again}"
        )
    return None


def _cached_engine(
    trt: Any,
    logger: Any,
    runtime: Any,
    model_dir: Path,
    manifest: Manifest,
    spec: BuildSpec,
    cache_dir: Path,
    workspace_mb: int,
) -> Any:
    path = spec.engine_path(cache_dir)
    if path.is_file():
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is not None:
            _log.info("loaded TensorRT engine", extra={"path": str(path)})
            return engine
        _log.warning("cached TensorRT engine %s is unusable; rebuilding", path)
    started = time.perf_counter()
    serialized = build_engine(trt, logger, model_dir / manifest.graphs[spec.graph].file, spec, cache_dir, workspace_mb)
    _atomic_write(path, serialized)
    _log.info("built TensorRT engine", extra={"path": str(path), "seconds": round(time.perf_counter() - started, 1)})
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None:
        raise RuntimeError(f"TensorRT could not load the engine it just built for {spec.graph}")
    return engine


def build_engine(trt: Any, logger: Any, onnx_path: Path, spec: BuildSpec, cache_dir: Path, workspace_mb: int) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine for ``spec``, reading and updating the timing cache.

    Raises:
        RuntimeError: the parser rejected the graph or the build failed (TensorRT's messages are included).
    """
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch, the only mode of TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if spec.fp16:
        # Weak typing (this flag) is deprecated since TensorRT 10.12 and gone in 11 (strongly typed networks only).
        config.set_flag(trt.BuilderFlag.FP16)
    if not spec.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    for name, dims in spec.inputs.items():
        profile.set_shape(name, (1, *dims), (spec.max_batch_size, *dims), (spec.max_batch_size, *dims))
    config.add_optimization_profile(profile)
    timing_path = spec.timing_cache_path(cache_dir)
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    if not config.set_timing_cache(timing, ignore_mismatch=False):  # a cache TensorRT cannot vouch for
        _log.warning("TensorRT timing cache %s does not match this build; starting an empty one", timing_path)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path} (see the TensorRT log above)")
    _atomic_write(timing_path, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


def _atomic_write(path: Path, data: bytes) -> None:
    # 0o644: other replicas sharing the cache volume may run as another user
    write_atomically(path, lambda temporary: temporary.write_bytes(data), mode=0o644)


def _options(options: TensorRTOptions | Mapping[str, Any] | None) -> TensorRTOptions:
    if not options:  # None or empty: the SLOTSTREAM_* variables, as the engine contract says
        return TensorRTOptions.from_environ()
    return options if isinstance(options, TensorRTOptions) else TensorRTOptions(**options)
