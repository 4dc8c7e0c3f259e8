"""The ``onnx`` backend: the exported ``first_step`` / ``step`` graphs run by ONNX Runtime.

The model directory is an export directory (``python -m training.export``): it holds ``manifest.json`` and the
two graphs. ``--device`` picks the execution provider, and the backend refuses to start when ONNX Runtime did
not load it, because ONNX Runtime otherwise falls back to the CPU with only a log line:

- ``cpu``: ``CPUExecutionProvider``;
- ``cuda`` / ``cuda:N``: ``CUDAExecutionProvider`` on GPU ``N`` (the CPU takes the few nodes CUDA lacks);
- ``tensorrt`` / ``tensorrt:N``: ``TensorrtExecutionProvider`` on GPU ``N``, then CUDA, then the CPU for nodes
  TensorRT does not take; TensorRT itself is imported first (the pip package loads the TensorRT libraries the
  provider links, :func:`~service.backends.tensorrt_backend.import_tensorrt`). Engines are built for batch sizes
  1 to ``--max-batch-size`` (one optimisation profile) and cached on disk with TensorRT's timing cache, in one
  folder per graph digest (ONNX Runtime keys its cached engines by the graph's names, not its weights), fp16
  when the export asked for it. These engines
  are ONNX Runtime's own, never compared with PyTorch by the export (whose ``--tensorrt`` check covers the
  ``tensorrt`` backend's engines), and their fp32 engines may use TF32: the provider has no TF32 option, and
  TensorRT allows TF32 by default (``NVIDIA_TF32_OVERRIDE=0`` in the server's environment turns it off in
  NVIDIA's libraries). The backend logs a warning saying so at every start.

The GPU providers need the GPU build of ONNX Runtime, installed as the README's "TensorRT on a GPU machine"
says (:data:`~service.backends.onnx_providers.GPU_EXTRA`: remove both builds, then install the ``gpu`` extra
from NVIDIA's index too). The CPU build (``onnxruntime``) and the GPU build (``onnxruntime-gpu``) own the same
module; with both installed the backend refuses GPU devices and warns on the CPU
(:func:`~service.backends.onnx_providers.check_one_onnxruntime`). Choosing and checking the provider is
:mod:`service.backends.onnx_providers`'s part; this module makes the sessions and runs them.

The model version served is the manifest's ``source.version``. When the export directory holds the source
model files (``config.json`` and ``model.safetensors``, which the export copies), they must be the source the
manifest records (:func:`check_source_files`): the ``torch`` backend serves those files, and every backend
must serve one model under one version. A directory with neither (the graphs and the manifest alone) is served
on the manifest's word, which nothing there can check (with only one of them, the backend also logs a warning).

Tuning (:class:`OnnxOptions`) is part of the server's ``ServiceConfig``: the flags ``--onnx-intra-op-threads``
and ``--onnx-inter-op-threads`` (1 / 1), ``--onnx-graph-optimization`` (``all``), ``--tensorrt-fp16`` (the
export's precision) and ``--tensorrt-cache-dir`` (``<model dir>/tensorrt``), which concern the TensorRT provider only
(set on another device, the backend logs that it ignores them), or the same names as
``SLOTSTREAM_*`` variables (``SLOTSTREAM_ONNX_INTRA_OP_THREADS``, ...). Library callers that pass no options
get the same variables read by :meth:`OnnxOptions.from_environ`, exactly as the server reads them.

Per-stream state is the slots array the service keeps per stream and stacks on the batch axis for each call,
exactly as with the ``torch`` backend. A call holds at least one frame, and ``step``'s state as many rows as its
frames: :func:`~service.engine.check_batch` refuses any other call before ONNX Runtime sees it (an empty batch
kills the process).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from plugins.files import check_writable
from plugins.model_files import CONFIG_FILE, WEIGHTS_FILE, read_model_config, recorded_frame_fit
from service.backends.graph_file import check_graph_file
from service.backends.manifest import (
    FIRST_STEP,
    INPUT_FRAMES,
    INPUT_PREV_SLOTS,
    MANIFEST_FILE,
    OUTPUT_MASKS,
    OUTPUT_SLOTS,
    STEP,
    Manifest,
    ManifestError,
    read_manifest,
)
from service.backends.onnx_providers import (
    GPU_EXTRA,
    ProviderChoice,
    check_one_onnxruntime,
    import_onnxruntime,
    installed_onnxruntime,
    parse_device,
    provider_list,
    verify_providers,
)
from service.config import ONNX_GRAPH_OPTIMIZATIONS
from service.config_sources import ENV_PREFIX, backend_environ_options
from service.engine import BackendUnavailable, Engine, EngineOutput, ModelCard, check_batch, model_version
from service.images import PREPROCESSING

if TYPE_CHECKING:
    import onnxruntime

_log = logging.getLogger(__name__)

DEFAULT_CACHE_SUBDIR = "tensorrt"
GRAPH_OPTIMIZATIONS = ONNX_GRAPH_OPTIMIZATIONS


@dataclass(frozen=True)
class OnnxOptions:
    """ONNX Runtime settings (see the module docstring for the environment variables).

    Attributes:
        intra_op_threads: threads inside one operator (0: ONNX Runtime's default, one per core).
        inter_op_threads: threads running independent operators in parallel.
        graph_optimization: ONNX Runtime graph optimisation level.
        tensorrt_fp16: build fp16 TensorRT engines; ``None`` follows the export's precision.
        tensorrt_cache_dir: engine and timing caches; ``None`` is ``<model dir>/tensorrt``.
    """

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization: str = "all"
    tensorrt_fp16: bool | None = None
    tensorrt_cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ValueError("ONNX Runtime thread counts must be >= 0")
        if self.graph_optimization not in GRAPH_OPTIMIZATIONS:
            raise ValueError(
                f"graph_optimization must be one of {', '.join(GRAPH_OPTIMIZATIONS)}, got {self.graph_optimization!r}"
            )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> OnnxOptions:
        """Read the ``SLOTSTREAM_ONNX_*`` / ``SLOTSTREAM_TENSORRT_*`` variables as the server reads them
        (:func:`~service.config_sources.backend_environ_options`: ``~`` expanded, ``SLOTSTREAM_NO_TENSORRT_FP16``
        understood, a misspelt name warned about).

        Raises:
            ValueError: a variable does not parse (the message names it).
        """
        return cls(**backend_environ_options("onnx", os.environ if environ is None else environ))


@dataclass
class _Sessions:
    first: onnxruntime.InferenceSession
    step: onnxruntime.InferenceSession
    providers: list[str] = field(default_factory=list)


def tensorrt_provider_warning(model_dir: Path, fp16: bool, cache_root: Path, environ: Mapping[str, str]) -> str:
    """The warning ``--device tensorrt`` logs at every start.

    ONNX Runtime's TensorRT provider parses and partitions the graphs and builds engines itself; the export's
    ``--tensorrt`` check covers the ``tensorrt`` backend's engines only. Its fp32 engines may also use TF32:
    TensorRT allows TF32 by default, the provider has no option for it, and only ``NVIDIA_TF32_OVERRIDE=0``
    (NVIDIA's switch for its libraries, read from the environment) turns it off.
    """
    warning = (
        f"--device tensorrt: ONNX Runtime's TensorRT execution provider builds engines of its own for {model_dir} "
        "(cached in " + str(cache_root / "onnxruntime") + "), which the export never compares with PyTorch: python "
        "-m training.export --tensorrt checks the tensorrt backend's engines (--backend tensorrt), not these"
    )
    if not fp16 and environ.get("NVIDIA_TF32_OVERRIDE") != "0":
        warning += (
            ". Its fp32 engines may also use TF32, which TensorRT allows by default and this provider has no option "
            "for: set NVIDIA_TF32_OVERRIDE=0 in the server's environment to keep them fp32 (and empty that folder: "
            "engines cached before may use TF32)"
        )
    return warning


def prepare_cache_dir(path: Path) -> Path:
    """Create the TensorRT cache directory and check that it is writable.

    Raises:
        BackendUnavailable: it cannot be created or written (the message names the variable to set).
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        check_writable(path)  # replicas sharing the folder check it at once at start-up
    except OSError as error:
        raise BackendUnavailable(
            f"the TensorRT cache directory {path} is not writable ({error.strerror}); point "
            f"{ENV_PREFIX}TENSORRT_CACHE_DIR at a writable directory"
        ) from error
    return path


class OnnxEngine(Engine):
    """The two graphs in ONNX Runtime sessions.

    Args:
        first: session of ``first_step.onnx``.
        step: session of ``step.onnx``.
        card: the model card.
    """

    def __init__(
        self, first: onnxruntime.InferenceSession, step: onnxruntime.InferenceSession, card: ModelCard
    ) -> None:
        self.card = card
        self._sessions: _Sessions | None = _Sessions(first, step, list(first.get_providers()))
        self._outputs = [OUTPUT_SLOTS, OUTPUT_MASKS]

    @property
    def max_concurrency(self) -> int:
        """ONNX Runtime sessions accept concurrent ``run`` calls; on the CPU each call uses its own threads."""
        return 64 if self.card.device == "cpu" else 1

    @property
    def tunes_per_batch_size(self) -> bool:
        """On a GPU, yes: ONNX Runtime's CUDA provider (which also runs what TensorRT does not take) searches
        cuDNN's convolution algorithms exhaustively at each new input shape."""
        return self.card.device != "cpu"

    @property
    def providers(self) -> list[str]:
        """The providers the sessions run on, most preferred first."""
        return self._live().providers

    def first_step(self, frames: np.ndarray) -> EngineOutput:
        """See :meth:`Engine.first_step`.

        Raises:
            ValueError: ``frames`` holds no frame (:func:`check_batch`).
        """
        check_batch(frames, image_size=self.card.image_size)
        feed = {INPUT_FRAMES: np.ascontiguousarray(frames, dtype=np.float32)}
        return _output(self._live().first.run(self._outputs, feed))

    def step(self, frames: np.ndarray, state: np.ndarray) -> EngineOutput:
        """See :meth:`Engine.step`.

        Raises:
            ValueError: ``frames`` holds no frame, or ``state`` another number of rows (:func:`check_batch`).
        """
        check_batch(frames, state, image_size=self.card.image_size)
        feed = {
            INPUT_FRAMES: np.ascontiguousarray(frames, dtype=np.float32),
            INPUT_PREV_SLOTS: np.ascontiguousarray(state, dtype=np.float32),
        }
        return _output(self._live().step.run(self._outputs, feed))

    def close(self) -> None:
        """Release the sessions."""
        self._sessions = None

    def _live(self) -> _Sessions:
        if self._sessions is None:
            raise RuntimeError("the onnx engine is closed")
        return self._sessions


def load_engine(
    model_dir: Path,
    *,
    name: str,
    device: str,
    max_batch_size: int,
    options: OnnxOptions | Mapping[str, Any] | None = None,
) -> OnnxEngine:
    """Load the export directory ``model_dir`` into ONNX Runtime on ``device``.

    Args:
        model_dir: an export directory (``manifest.json``, ``first_step.onnx``, ``step.onnx``).
        name: the model's name.
        device: ``cpu``, ``cuda[:N]`` or ``tensorrt[:N]``.
        max_batch_size: most frames per call.
        options: ONNX Runtime settings, or the keyword arguments of :class:`OnnxOptions` (what the server passes,
            from its ``ServiceConfig``); ``None`` reads them from the environment.

    Raises:
        ManifestError: ``model_dir`` is not an export directory, its ``config.json`` / ``model.safetensors``
            are not the source the manifest records (:func:`check_source_files`; a ``ValueError``), or a graph
            file is not what its manifest entry records
            (:func:`~service.backends.graph_file.check_graph_file`).
        ValueError: ``device`` or an option is invalid.
        BackendUnavailable: onnxruntime is missing, a graph does not load, the requested provider is not
            available or did not load, both ONNX Runtime builds are installed (on a GPU device), or (on
            ``tensorrt``) TensorRT is not installed or the export's TensorRT engines of that precision failed
            their parity check.
    """
    choice = parse_device(device)
    options = _options(options)
    manifest = read_manifest(model_dir, verify_graphs=True)
    for warning in (check_source_files(manifest, model_dir), tensorrt_options_ignored(choice, options)):
        if warning:
            _log.warning("%s", warning)
    fp16 = manifest.precision == "fp16" if options.tensorrt_fp16 is None else options.tensorrt_fp16
    if choice.kind == "tensorrt":
        from service.backends.tensorrt_backend import check_tensorrt_parity

        # Only a refusal: engines of this precision that failed the export's check (the tensorrt backend's, built
        # by the same TensorRT) say that these would fail too. A passing check says nothing about ONNX Runtime's.
        check_tensorrt_parity(manifest, model_dir, "fp16" if fp16 else "fp32")
    both = check_one_onnxruntime(choice, installed_onnxruntime())
    if both:
        _log.warning("%s", both)
    tensorrt_version = None
    if choice.kind == "tensorrt":
        from service.backends.tensorrt_backend import import_tensorrt

        # ONNX Runtime's TensorRT provider links libnvinfer and libnvonnxparser, which the pip tensorrt package
        # loads into the process only when imported: without the import the provider never loads.
        tensorrt_version = str(import_tensorrt(f"--backend onnx --device {choice}").__version__)
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    if choice.provider not in available:
        raise BackendUnavailable(
            f"--device {device} needs ONNX Runtime's {choice.provider}, but this onnxruntime {ort.__version__} "
            f"offers only {', '.join(available)}. Install the GPU build instead of the CPU one ({GPU_EXTRA}; the two "
            "packages must never be installed together), or use --device cpu"
        )
    cache_root = options.tensorrt_cache_dir or model_dir / DEFAULT_CACHE_SUBDIR
    if choice.kind == "tensorrt":  # only once the provider is there: engines that cannot load need no warning
        _log.warning("%s", tensorrt_provider_warning(model_dir, fp16, cache_root, os.environ))
    for graph in (FIRST_STEP, STEP):  # both files held to the manifest before any session is made
        check_graph_file(manifest, graph, model_dir / manifest.graphs[graph].file, tensorrt=False)
    sessions = {}
    for graph in (FIRST_STEP, STEP):
        # ONNX Runtime names cached engines after the graph's structure and names, never its weights: one folder
        # per graph file digest keeps a re-export or another model of the same architecture off stale engines.
        cache_dir = cache_root / "onnxruntime" / manifest.graphs[graph].sha256[:16]
        if choice.kind == "tensorrt":
            prepare_cache_dir(cache_dir)
        providers = provider_list(choice, graph_inputs(manifest, graph), max_batch_size, fp16, cache_dir)
        path = model_dir / manifest.graphs[graph].file
        try:
            session = ort.InferenceSession(str(path), session_options(ort, options), providers=providers)
        except Exception as error:  # ONNX Runtime's errors (InvalidProtobuf, Fail, ...) derive from Exception
            raise BackendUnavailable(
                f"ONNX Runtime cannot load {path}: {error} (a damaged graph needs a new export, python -m "
                "training.export; a provider error, the GPU setup checked)"
            ) from error
        verify_providers(choice, list(session.get_providers()), path.name, tensorrt_version=tensorrt_version)
        sessions[graph] = session
    return OnnxEngine(
        sessions[FIRST_STEP], sessions[STEP], manifest_card(manifest, name, "onnx", str(choice), max_batch_size)
    )


def check_source_files(manifest: Manifest, model_dir: Path) -> str | None:
    """Check that the source model files of an export directory are the source its manifest records.

    The export copies ``config.json`` and ``model.safetensors`` next to the graphs, and the ``torch`` backend
    serves them under :func:`service.engine.model_version` of the two, while the ``onnx`` and ``tensorrt`` backends
    serve the graphs under the manifest's ``source.version``. A hand-edited ``config.json`` (``later_iters``, an
    ``input.frame_fit``) or ``source.version`` would serve two models, or one model under two versions. The
    weights' digest is checked by :func:`~service.backends.manifest.read_manifest` (``verify_graphs``); this checks
    the version of both files. A directory holding neither (the graphs and the manifest alone) is served on the
    manifest's word; one holding only one of them (which the ``torch`` backend cannot serve either) too, with a
    warning that its version could not be checked.

    Returns:
        That warning when only one of the two files is there, else ``None``.

    Raises:
        ManifestError: their version is not the manifest's (the message names both versions and says to
            re-export).
    """
    present = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if (model_dir / name).is_file()]
    if not present:
        return None
    if len(present) == 1:
        missing = WEIGHTS_FILE if present[0] == CONFIG_FILE else CONFIG_FILE
        return (
            f"{model_dir} holds {present[0]} without {missing}, so the model version {manifest.source.version} "
            f"its {MANIFEST_FILE} records cannot be checked against the source files: an export holds both; re-run "
            f"python -m training.export --model <model dir> --out {model_dir} to restore them"
        )
    version = model_version(model_dir)
    if version != manifest.source.version:
        raise ManifestError(
            f"{model_dir}: its {CONFIG_FILE} and {WEIGHTS_FILE} are model version {version} (what --backend torch "
            f"serves), but its {MANIFEST_FILE} records the graphs' source as version {manifest.source.version}: a "
            "file was edited after the export, and the backends would serve different models or one model under "
            f"two versions. Re-export: python -m training.export --model <model dir> --out {model_dir}, from the "
            "model directory you mean to serve"
        )
    _check_manifest_against_config(manifest, model_dir)
    return None


def _check_manifest_against_config(manifest: Manifest, model_dir: Path) -> None:
    """Check that what the manifest says of the model (the frame fit, slot count and width, input size and
    iterations) is what its ``config.json`` says: the export wrote both from it, so a difference is a hand edit
    of the manifest, and the two backends would serve the model differently under one version.

    Raises:
        ManifestError: a field differs (the message names it, with both values).
    """
    config_path = model_dir / CONFIG_FILE
    try:
        payload = read_model_config(config_path)
        fit = recorded_frame_fit(payload, config_path)
    except (OSError, ValueError) as error:
        raise ManifestError(f"{config_path} cannot be read: {error}") from error
    model = payload["model"]
    recorded: dict[str, tuple[object, object]] = {"input.frame_fit": (manifest.input.frame_fit, fit)}
    exported: dict[str, object] = {
        "num_slots": manifest.num_slots,
        "slot_dim": manifest.slot_dim,
        "first_iters": manifest.first_iters,
        "later_iters": manifest.later_iters,
        "image_size": [manifest.input.height, manifest.input.width],
    }
    for name, value in exported.items():
        if name in model:  # (left out: the constructor's default, which the manifest recorded)
            given = model[name]
            recorded[name] = (value, list(given) if isinstance(given, list | tuple) else given)
    for name, (in_manifest, in_config) in recorded.items():
        if in_manifest != in_config:
            raise ManifestError(
                f"{model_dir}: its {MANIFEST_FILE} gives {name} {in_manifest!r}, but its {CONFIG_FILE} "
                f"{in_config!r}: the manifest was edited after the export, and the backends would serve the model "
                f"differently under one version. Re-export: python -m training.export --model <model dir> --out "
                f"{model_dir}"
            )


def tensorrt_options_ignored(choice: ProviderChoice, options: OnnxOptions) -> str | None:
    """The warning for TensorRT settings given to a provider that builds no TensorRT engines, else ``None``.

    ``--tensorrt-fp16`` and ``--tensorrt-cache-dir`` concern ONNX Runtime's TensorRT provider (``--device
    tensorrt[:N]``) and the ``tensorrt`` backend; the CPU and CUDA providers run the fp32 graphs as they are.
    """
    if choice.kind == "tensorrt":
        return None
    given = [
        flag
        for flag, value in (
            ("--tensorrt-fp16", options.tensorrt_fp16),
            ("--tensorrt-cache-dir", options.tensorrt_cache_dir),
        )
        if value is not None
    ]
    if not given:
        return None
    return (
        f"{' and '.join(given)} (or {', '.join('SLOTSTREAM_' + flag[2:].upper().replace('-', '_') for flag in given)})"
        f" ignored: {'they apply' if len(given) > 1 else 'it applies'} only to TensorRT engines (--backend onnx "
        f"--device tensorrt[:N], or --backend tensorrt); --device {choice} runs the fp32 graphs as exported"
    )


def session_options(ort: Any, options: OnnxOptions) -> onnxruntime.SessionOptions:
    """ONNX Runtime session options from ``options``."""
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    session = ort.SessionOptions()
    session.intra_op_num_threads = options.intra_op_threads
    session.inter_op_num_threads = options.inter_op_threads
    if options.inter_op_threads > 1:  # sequential execution, ONNX Runtime's default, ignores inter-op threads
        session.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    session.graph_optimization_level = levels[options.graph_optimization]
    return session


def graph_inputs(manifest: Manifest, graph: str) -> dict[str, tuple[int, ...]]:
    """The inputs of ``graph`` and their shapes without the batch axis."""
    return {spec.name: tuple(int(d) for d in spec.shape[1:]) for spec in manifest.graphs[graph].inputs}


def manifest_card(manifest: Manifest, name: str, backend: str, device: str, max_batch_size: int) -> ModelCard:
    """The model card of an export directory."""
    return ModelCard(
        name=name,
        version=manifest.source.version,
        backend=backend,
        device=device,
        image_size=(manifest.input.height, manifest.input.width),
        num_slots=manifest.num_slots,
        slot_dim=manifest.slot_dim,
        mask_size=manifest.mask_size,
        max_batch_size=max_batch_size,
        preprocessing=PREPROCESSING,
        frame_fit=manifest.input.frame_fit,
    )


def _output(outputs: list[Any]) -> EngineOutput:
    slots, masks = (np.asarray(array, dtype=np.float32) for array in outputs)
    return EngineOutput(slots=slots, masks=masks, state=slots.copy())  # state [B, K, D]: the slots themselves


def _options(options: OnnxOptions | Mapping[str, Any] | None) -> OnnxOptions:
    if not options:  # None or empty: the SLOTSTREAM_* variables, as the engine contract says
        return OnnxOptions.from_environ()
    return options if isinstance(options, OnnxOptions) else OnnxOptions(**options)
