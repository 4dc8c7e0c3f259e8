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
:meth:`TensorRTOptions.from_environ`, exactly as the server reads them:

- ``--tensorrt-fp16`` / ``SLOTSTREAM_TENSORRT_FP16``: build fp16 engines (default: the export's precision);
- ``--tensorrt-cache-dir`` / ``SLOTSTREAM_TENSORRT_CACHE_DIR``: engine and timing caches (default
  ``<model dir>/tensorrt``; must be writable);
- ``--tensorrt-cuda-graphs`` / ``SLOTSTREAM_TENSORRT_CUDA_GRAPHS``: capture CUDA graphs (default off);
- ``--tensorrt-workspace-mb`` / ``SLOTSTREAM_TENSORRT_WORKSPACE_MB``: builder workspace limit (default 1024).

``tensorrt`` is imported only here, lazily: without it (or without a GPU) the backend refuses to start and
gives the README's install steps (:data:`~service.backends.onnx_providers.GPU_EXTRA`). Device buffers, the
stream and CUDA graphs come from PyTorch's CUDA runtime, so no other CUDA binding is needed. As with the
``onnx`` backend, an export directory's ``config.json`` and ``model.safetensors`` must be the source its manifest
records (:func:`~service.backends.onnx_backend.check_source_files`), and each graph file must be what its manifest
entry records (:func:`~service.backends.graph_file.check_graph_file`: inputs and outputs, metadata, opset,
operator counts, and TensorRT's operator limits checked again on the graph itself); both checks run before
TensorRT or a GPU is looked for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plugins.files import write_atomically
from service.backends.graph_file import check_graph_file
from service.backends.manifest import FIRST_STEP, STEP, Manifest, read_manifest
from service.backends.onnx_backend import (
    DEFAULT_CACHE_SUBDIR,
    check_source_files,
    graph_inputs,
    manifest_card,
    prepare_cache_dir,
)
from service.backends.onnx_providers import GPU_EXTRA
from service.backends.tensorrt_graphs import GraphRunner, batch_buckets
from service.config_sources import backend_environ_options
from service.engine import BackendUnavailable, Engine, EngineOutput, ModelCard, check_batch

_log = logging.getLogger(__name__)

NEEDS_GPU = f"needs an NVIDIA GPU and TensorRT ({GPU_EXTRA})"
TIMING_CACHE_PREFIX = "timing-"


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
        """Read the ``SLOTSTREAM_TENSORRT_*`` variables as the server reads them
        (:func:`~service.config_sources.backend_environ_options`: ``~`` expanded, ``SLOTSTREAM_NO_*`` understood,
        a misspelt name warned about).

        Raises:
            ValueError: a variable does not parse (the message names it).
        """
        return cls(**backend_environ_options("tensorrt", os.environ if environ is None else environ))


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


def import_tensorrt(needed_by: str = "the tensorrt backend") -> Any:
    """``import tensorrt``, or a :class:`BackendUnavailable` naming the ``gpu`` extra.

    The import also puts TensorRT's libraries into the process: the pip ``tensorrt`` package keeps
    ``libnvinfer.so`` and ``libnvonnxparser.so`` in a folder the dynamic loader does not search and loads them when
    imported, which is how ONNX Runtime's TensorRT provider (``--backend onnx --device tensorrt``) finds them too.

    Args:
        needed_by: what needs TensorRT, for the message.
    """
    try:
        import tensorrt
    except ImportError as error:
        raise BackendUnavailable(f"{needed_by} {NEEDS_GPU}: the tensorrt package is not installed") from error
    return tensorrt


class TensorRTEngine(Engine):
    """The two graphs as TensorRT engines on one GPU.

    Args:
        first: runner of ``first_step``.
        step: runner of ``step``.
        card: the model card.
        build: what the engines were built for (the exporter records it with their parity).
    """

    def __init__(self, first: GraphRunner, step: GraphRunner, card: ModelCard, build: EngineBuild) -> None:
        self.card = card
        self.build = build
        self._runners: tuple[GraphRunner, GraphRunner] | None = (first, step)

    def first_step(self, frames: np.ndarray) -> EngineOutput:
        """See :meth:`Engine.first_step`; a batch of no frames is refused (:func:`~service.engine.check_batch`)."""
        check_batch(frames, image_size=self.card.image_size)
        slots, masks = self._live()[0].run({"frames": frames})
        return EngineOutput(slots=slots, masks=masks, state=slots.copy())

    def step(self, frames: np.ndarray, state: np.ndarray) -> EngineOutput:
        """See :meth:`Engine.step`; a batch of no frames, or a ``state`` of another batch size, is refused
        (:func:`~service.engine.check_batch`)."""
        check_batch(frames, state, image_size=self.card.image_size)
        slots, masks = self._live()[1].run({"frames": frames, "prev_slots": state})
        return EngineOutput(slots=slots, masks=masks, state=slots.copy())

    def close(self) -> None:
        """Drop the engines, their buffers and graphs."""
        self._runners = None

    def _live(self) -> tuple[GraphRunner, GraphRunner]:
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
        BackendUnavailable: not a CUDA device, no GPU visible, TensorRT missing, the cache not writable, the
            export was made with ``--onnxruntime-only`` and lists operators TensorRT lacks, or (with
            ``check_parity``) the engines of this precision failed the export's parity check.
        ManifestError: ``model_dir`` is not an export directory, its ``config.json`` / ``model.safetensors``
            are not the source the manifest records (a ``ValueError``), or a graph file is not what its manifest
            entry records or holds what TensorRT cannot parse
            (:func:`~service.backends.graph_file.check_graph_file`, before TensorRT or a GPU is looked for).
        RuntimeError: TensorRT could not parse or build a graph (its messages are included), or (with CUDA
            graphs) a bucket's graph replay does not reproduce a plain run.
    """
    index = parse_cuda_device(device)
    options = _options(options)
    manifest = read_manifest(model_dir, verify_graphs=True)
    unchecked_source = check_source_files(manifest, model_dir)
    if unchecked_source:
        _log.warning("%s", unchecked_source)
    if manifest.tensorrt_problems:  # exported with --onnxruntime-only: refused before looking for TensorRT or a GPU
        more = f" (and {len(manifest.tensorrt_problems) - 1} more)" if len(manifest.tensorrt_problems) > 1 else ""
        raise BackendUnavailable(
            f"{model_dir} was exported with --onnxruntime-only and TensorRT cannot take its graphs: "
            f"{manifest.tensorrt_problems[0]}{more}; serve it with --backend onnx (ONNX Runtime, --device cpu or "
            "cuda) or --backend torch"
        )
    for graph in (FIRST_STEP, STEP):  # what TensorRT would parse, held to the manifest without TensorRT or a GPU
        check_graph_file(manifest, graph, model_dir / manifest.graphs[graph].file, tensorrt=True)
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
        runner = GraphRunner(trt, engine, spec, torch.device("cuda", index), stream)
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
        RuntimeError: the parser rejected the graph, its inputs are not those the manifest records for
            ``spec.graph``, or the build failed (TensorRT's messages are included).
    """
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch, the only mode of TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    parsed = [network.get_input(index).name for index in range(network.num_inputs)]
    if parsed != list(spec.inputs):  # a graph file under the other step's name (files and digests swapped)
        raise RuntimeError(
            f"{onnx_path} takes {parsed}, but the manifest records {list(spec.inputs)} for the {spec.graph} graph: "
            "the export's files do not match its manifest; re-run python -m training.export"
        )
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
