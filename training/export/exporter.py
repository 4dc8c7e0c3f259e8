"""``export_model``: model directory -> validated export directory (graphs + manifest + the source model files).

Every export is validated before anything is published: ``onnx.checker``, the static operator check against
TensorRT (:mod:`training.export.operators`) and the recurrent parity run against PyTorch
(:mod:`training.export.parity`). The files are written to a staging folder inside the output directory and
moved into place only when every check passed, so a failed export never leaves a servable-looking directory.
The manifest says how to use the graphs from another runtime (its ``usage`` block), and each graph carries the same
facts in its ``metadata_props`` (:mod:`training.export.usage`).

One export writes into an output directory at a time: an export holds the lock of ``--out``
(:mod:`training.export.export_lock`, ``fcntl.flock`` on ``--out/.export.lock``) from before it checks the folder
until its last file is written (TensorRT engines included). A second export into a folder another export is
writing is refused at once (``another export is writing to --out ...``, a ``ValueError``) and touches nothing
there; staging folders are removed as a killed export's leftovers only while holding that lock, so never those of
a running export (:mod:`training.export.out_folder` decides what may be replaced in ``--out``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from plugins import VideoSlotModel
from plugins.builtin.encoders.dinov2 import IMAGENET_MEAN, IMAGENET_STD
from plugins.model_files import CONFIG_FILE, WEIGHTS_FILE, weights_mismatch_message
from service.backends.graph_file import graph_signature
from service.backends.manifest import (
    BATCH_AXIS,
    GRAPH_FILES,
    MANIFEST_FILE,
    GraphSpec,
    InputSpec,
    Manifest,
    ParityReport,
    SourceSpec,
    TensorSpec,
    file_sha256,
    write_manifest,
)
from service.config import MAX_BATCH_SIZE
from service.engine import model_version
from training.export.batch_axis import DIAGNOSIS_BATCH_SIZES, fixed_batch_diagnosis
from training.export.errors import ExportError as ExportError  # re-exported: its home before errors.py
from training.export.float64_reference import float64_summary
from training.export.graphs import DEFAULT_OPSET, export_graph, input_names, output_shapes
from training.export.operators import TENSORRT_OPS_SOURCE, check_operators
from training.export.out_folder import (
    STAGING_PREFIX,
    check_out_dir,
    locked_out,
    missing_folders,
    remove_empty,
    remove_leftovers,
)
from training.export.parity import (
    BATCH_SIZES,
    PARITY_FRAMES,
    PARITY_VIDEOS,
    BatchSizeError,
    OrtGraphs,
    Runtime,
    measure_parity,
    synthetic_video,
)
from training.export.random_hint import random_operator_hint
from training.export.usage import graph_metadata, stamp_graph, usage_block

if TYPE_CHECKING:
    import onnx

_T = TypeVar("_T")

#: fp16 TensorRT engines are held to looser thresholds than the fp32 graphs (a choice, see the README).
FP16_MAX_ABS = 0.1
FP16_AGREEMENT = 0.99

_INSIDE_GRAPH = {
    "small_cnn": "x * 2 - 1 (small_cnn), inside the graph",
    "dinov2": "bicubic resize to the ViT input size when it differs, then (x - mean) / std per channel with the "
    f"ImageNet mean {IMAGENET_MEAN} and std {IMAGENET_STD} (dinov2), inside the graph",
}

CARD_FILES = ("MODEL_CARD.md", "scores.json", "sample.png", "object_recall.png")
"""The files ``training.model_card`` writes next to a model, copied into its export when present."""


@dataclass(frozen=True)
class ExportOptions:
    """How to export.

    Attributes:
        opset: ONNX opset (17-20).
        fp16: record fp16 as the precision TensorRT engines are built with where the export is served (the
            ``tensorrt`` backend, the ``onnx`` backend's TensorRT provider); the graphs stay fp32, and only with
            ``tensorrt`` are fp16 engines built and checked here.
        tensorrt: also build TensorRT engines into ``<out>/tensorrt`` (needs an NVIDIA GPU and TensorRT) and
            measure their parity.
        max_batch_size: largest batch the TensorRT optimisation profile covers (used with ``tensorrt`` only).
        parity_frames: length of the parity video.
        parity_videos: videos in the parity run (its batch size).
        batch_sizes: batch sizes checked row by row.
        onnxruntime_only: export for ONNX Runtime even when TensorRT cannot take the graphs: what they use
            outside TensorRT's operator support (an operator, a ``Resize`` mode) is recorded in the manifest's
            ``tensorrt_problems`` instead of failing the export, and the ``tensorrt`` backend refuses an export
            whose list is not empty (one without problems serves there as any other). Not with ``tensorrt``.
        replace: let the export replace an export of another model (another source version) in ``out_dir``.
            Without it that is refused: a model directory exported in place holds the model itself next to its
            export, and replacing the export would delete that model.
    """

    opset: int = DEFAULT_OPSET
    fp16: bool = False
    tensorrt: bool = False
    max_batch_size: int = 16
    parity_frames: int = PARITY_FRAMES
    parity_videos: int = PARITY_VIDEOS
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    onnxruntime_only: bool = False
    replace: bool = False


def export_model(
    model_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], options: ExportOptions | None = None
) -> Manifest:
    """Export the model in ``model_dir`` into ``out_dir`` and validate it.

    Args:
        model_dir: a directory written by :meth:`VideoSlotModel.save_pretrained`.
        out_dir: the export directory (created; files of an earlier export are replaced).
        options: export settings.

    Returns:
        The manifest written to ``out_dir/manifest.json``.

    Raises:
        ExportError: a graph failed tracing (a value the graph would freeze, an operator ONNX lacks),
            ``onnx.checker`` or the operator check, or parity is out of tolerance; or it fails at another batch
            size than the traced one because a component fixes the batch size (the message names both batch
            sizes and, where found, the component and its line).
        FileNotFoundError, ValueError: ``model_dir`` is not a readable model directory, ``out_dir`` holds other
            files than an export or the source model, another export is writing to ``out_dir``
            (:class:`~training.export.export_lock.OutFolderBusy`), ``max_batch_size`` is outside
            ``[1, MAX_BATCH_SIZE]``, or ``tensorrt`` and ``onnxruntime_only`` are both set.
        OSError: ``out_dir`` cannot be created or written (the message names it as ``--out``).
        BackendUnavailable: ``tensorrt`` was asked for without TensorRT or a visible CUDA GPU (checked first).
    """
    options = options or ExportOptions()
    source = Path(model_dir)
    out = Path(out_dir)
    if not 1 <= options.max_batch_size <= MAX_BATCH_SIZE:
        raise ValueError(
            f"--max-batch-size must be in [1, {MAX_BATCH_SIZE}] (the most a server takes: its --max-batch-size), "
            f"got {options.max_batch_size}"
        )
    if options.tensorrt and options.onnxruntime_only:
        raise ValueError(
            "--tensorrt builds TensorRT engines and --onnxruntime-only exports graphs TensorRT need not take; "
            "give one of them"
        )
    if options.tensorrt:
        _check_tensorrt_available()  # before minutes of export and parity, not after publishing them
    version = _source_version(source)  # before loading: the files must not change under the export
    model = _load_source(source)  # (a missing file is refused here, by name)
    if version is None:  # unreadable a moment ago, loaded now: hash what was loaded
        version = model_version(source)
    check_out_dir(out, source, version, options.replace)  # before anything is created or locked there
    created = missing_folders(out)
    published = False
    try:
        with locked_out(out):
            check_out_dir(out, source, version, options.replace)  # again: another export may have published since
            remove_leftovers(out)
            manifest, video = _export_into(model, source, out, version, options)
            published = True
            if options.tensorrt:
                manifest = _add_tensorrt(model, out, manifest, options, video)
    finally:
        if not published:  # a failed export leaves no empty folders it made itself
            remove_empty(created)
    return manifest


def _export_into(
    model: VideoSlotModel, source: Path, out: Path, version: str, options: ExportOptions
) -> tuple[Manifest, np.ndarray]:
    """Export and check the graphs in a staging folder inside ``out``, then move its files into ``out`` (the
    manifest last); the caller holds the lock of ``out``.

    Returns:
        The manifest written, and the parity video ``[T, B, 3, H, W]`` (the TensorRT check runs on it too).
    """
    try:
        staging = Path(tempfile.mkdtemp(dir=out, prefix=STAGING_PREFIX))
    except OSError as error:  # named as the flag, not as the staging folder the user never named
        raise OSError(f"--out {out} cannot be written to: {error.strerror or error}") from error
    try:
        checked = {
            name: _onnx_errors_named(
                _export_checked, model, name, options, staging, version, batch_axis_of=(model, name)
            )
            for name in GRAPH_FILES
        }
        graphs = {name: spec for name, (spec, _) in checked.items()}
        tensorrt_problems = [f"{name}: {problem}" for name, (_, problems) in checked.items() for problem in problems]
        video = synthetic_video(model.image_size, options.parity_frames, options.parity_videos)
        runtime = _onnx_errors_named(OrtGraphs, staging / GRAPH_FILES["first_step"], staging / GRAPH_FILES["step"])
        parity = _onnxruntime_parity(model, runtime, video, options.batch_sizes)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            shutil.copyfile(source / name, staging / name)
        if model_version(staging) != version:  # the graphs hold the weights loaded, the copies the new ones
            raise ValueError(
                f"--model {source} changed while it was being exported (its {CONFIG_FILE} or {WEIGHTS_FILE} was "
                "written again, by a training run saving its best model, say): export it again once it is saved"
            )
        for name in CARD_FILES:  # a published model's card travels with its export
            if (source / name).is_file():
                shutil.copyfile(source / name, staging / name)
        manifest = _manifest(model, staging, version, options, graphs, {"onnxruntime": parity}, tensorrt_problems)
        write_manifest(staging, manifest)
        if out.resolve() != source.resolve():  # an earlier export replaced: no card of another model stays
            for name in CARD_FILES:
                if not (staging / name).exists():
                    (out / name).unlink(missing_ok=True)
        for entry in sorted(staging.iterdir(), key=lambda path: path.name == MANIFEST_FILE):  # manifest last
            os.replace(entry, out / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest, video


def _onnx_errors_named(
    function: Callable[..., _T], *args: Any, batch_axis_of: tuple[VideoSlotModel, str] | None = None
) -> _T:
    """``function(*args)``, with an error of ONNX or ONNX Runtime (their exception classes derive from
    ``Exception`` alone: ``onnx.checker.ValidationError``, ONNX Runtime's ``Fail``...) raised as an
    :class:`ExportError` saying which library refused the graph, so the command reports it in one line.

    With ``batch_axis_of`` (the model and the graph ``function`` exports), an ONNX Runtime error is first put down
    to a component that fixes the batch size where :func:`~training.export.batch_axis.fixed_batch_diagnosis` finds
    one: the export runs the graph at other batch sizes than the traced one (to freeze its reshapes), and ONNX
    Runtime's error then names whichever later node the wrong batch size reached, not the component."""
    try:
        return function(*args)
    except Exception as error:
        library = type(error).__module__.split(".")[0]
        if library not in ("onnx", "onnxruntime"):
            raise
        name = "ONNX Runtime" if library == "onnxruntime" else "ONNX"
        diagnosis = None
        if batch_axis_of is not None and library == "onnxruntime":
            diagnosis = fixed_batch_diagnosis(*batch_axis_of)
        if diagnosis is not None:
            raise ExportError(f"{diagnosis} ({name}'s own error: {type(error).__name__}: {error})") from error
        raise ExportError(f"{name} refused the exported graph: {type(error).__name__}: {error}") from error


def _onnxruntime_parity(
    model: VideoSlotModel, runtime: OrtGraphs, video: np.ndarray, batch_sizes: tuple[int, ...]
) -> ParityReport:
    """:func:`_checked_parity` of the ONNX Runtime graphs; a graph failing at a batch size, or a parity failure
    (which a graph run at another batch size than the traced one gives when a component fixes the batch size
    without failing), is put down to that component when :func:`~training.export.batch_axis.fixed_batch_diagnosis`
    finds one.

    Raises:
        BatchSizeError: a graph raised or answered another batch size, and no component fixes it.
        ParityFailed: out of tolerance, and no component fixes the batch size.
        ExportError: a component fixes the batch size (the message names it; the failure is the cause).
    """
    try:
        return _checked_parity(model, runtime, runtime.name, video, batch_sizes, fp16=False)
    except BatchSizeError as error:
        diagnosis = fixed_batch_diagnosis(model, error.which, (error.batch, *DIAGNOSIS_BATCH_SIZES))
        if diagnosis is None:
            raise
        raise ExportError(f"{diagnosis} ({error})") from error
    except ParityFailed as error:
        sizes = (int(video.shape[1]), *batch_sizes, *DIAGNOSIS_BATCH_SIZES)  # [T, B, 3, H, W]: the video's B first
        diagnosis = next(filter(None, (fixed_batch_diagnosis(model, which, sizes) for which in GRAPH_FILES)), None)
        if diagnosis is None:
            raise
        raise ExportError(f"{diagnosis} (parity: {error})") from error


def _source_version(source: Path) -> str | None:
    """:func:`service.engine.model_version` of the model directory ``source``; ``None`` when a file of it cannot be
    read (:func:`_load_source` then says which)."""
    try:
        return model_version(source)
    except OSError:
        return None


def _load_source(source: Path) -> VideoSlotModel:
    """``VideoSlotModel.from_pretrained(source)``, its refusals naming ``--model``.

    Raises:
        FileNotFoundError: as ``from_pretrained``, with :func:`plugins.model_files.run_folder_hint` for a training run
            folder (``RUN/model`` and ``RUN/best`` hold its models).
        ValueError: as ``from_pretrained``; for weights that do not fit the config, its one-line summary
            (:func:`plugins.model_files.weights_mismatch_message`: how many tensors differ and the first few).
    """
    try:
        return VideoSlotModel.from_pretrained(source)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--model {source}: {error}") from error
    except ValueError as error:
        mismatch = weights_mismatch_message(WEIGHTS_FILE, CONFIG_FILE, str(error.__cause__ or error))
        if mismatch is None:
            raise
        raise ValueError(f"--model {source}: {mismatch}") from error


def _check_tensorrt_available() -> None:
    from service.backends import tensorrt_backend
    from service.engine import BackendUnavailable

    tensorrt_backend.import_tensorrt()
    if not torch.cuda.is_available():
        raise BackendUnavailable(
            f"--tensorrt builds engines on a CUDA GPU and none is visible (the tensorrt backend "
            f"{tensorrt_backend.NEEDS_GPU})"
        )


def _export_checked(
    model: VideoSlotModel, which: str, options: ExportOptions, directory: Path, version: str
) -> tuple[GraphSpec, list[str]]:
    """Export, check and save one graph; returns its spec and the TensorRT-only problems ``onnxruntime_only``
    let through."""
    import onnx

    proto = export_graph(model, which, options.opset)
    report = check_operators(proto)
    refusal = report.refusal(which, tensorrt=not options.onnxruntime_only)
    if refusal is not None:
        if report.serving_problems:  # no runtime serves it: what to change in the model, where known
            hint = random_operator_hint(model, report)
        else:  # TensorRT's alone: ONNX Runtime would run the graph
            hint = (
                "\nTo serve it with ONNX Runtime only (--backend onnx), export with --onnxruntime-only: the "
                "manifest records these problems and the tensorrt backend refuses the export"
            )
        raise ExportError(refusal + hint)
    stamp_graph(proto, graph_metadata(which, usage_block(model), _frames_input(model), version))
    path = directory / GRAPH_FILES[which]
    onnx.save(proto, str(path))
    inputs, outputs = _input_specs(model, which), _output_specs(model)
    _check_signature(which, proto, inputs, outputs)
    spec = GraphSpec(file=path.name, sha256=_sha256(path), inputs=inputs, outputs=outputs, operators=report.operators)
    return spec, report.tensorrt_only


def _checked_parity(
    model: VideoSlotModel, runtime: Runtime, name: str, video: np.ndarray, batch_sizes: tuple[int, ...], fp16: bool
) -> ParityReport:
    """:func:`~training.export.parity.measure_parity` at the fp32 thresholds, where maxima above the limit are
    judged against float64 PyTorch (a runtime no farther from it than fp32 rounding passes), or with ``fp16`` at
    the fp16 thresholds, against fp32 PyTorch alone.

    Raises:
        ParityFailed: out of tolerance.
    """
    if fp16:
        report = measure_parity(
            model, runtime, name, video, batch_sizes, FP16_MAX_ABS, FP16_AGREEMENT, float64_reference=False
        )
    else:
        report = measure_parity(model, runtime, name, video, batch_sizes)
    if not report.passed:
        raise ParityFailed(report)
    return report


class ParityFailed(ExportError):
    """A runtime's outputs did not match PyTorch's; :attr:`report` holds the measurement."""

    def __init__(self, report: ParityReport) -> None:
        self.report = report
        if report.first_frame_over_limit is not None:
            when = (
                f"The difference first exceeded the limit at frame {report.first_frame_over_limit} of "
                f"{report.frames} (frame 0 is first_step)"
            )
        elif max(report.slots_max_abs, report.masks_max_abs) > report.max_abs_threshold:
            when = f"The video stayed within the limit, the single calls at batch sizes {report.batch_sizes} did not"
        else:
            when = "The differences stayed within the limit"
        super().__init__(
            f"{report.runtime} does not match PyTorch on a {report.frames}-frame video fed recurrently: "
            f"slots max |diff| {report.slots_max_abs:.3g}, soft masks max |diff| {report.masks_max_abs:.3g} "
            f"(limit {report.max_abs_threshold:g}); segmentations agree on {report.argmax_agreement:.4%} of the "
            f"pixels (need {report.agreement_threshold:.1%}). {when}; PyTorch's own slots "
            f"reach max |slot| {report.reference_slots_max_abs:.3g}: slots that grow large over the frames amplify "
            "float rounding (the model diverges, retrain or bound it), while a difference from the first frames "
            f"with small slots points to the export{_float64_sentence(report)}"
        )


def _float64_sentence(report: ParityReport) -> str:
    """``". "`` and :func:`~training.export.float64_reference.float64_summary` with a capital, or ``""`` where no
    float64 reference ran."""
    summary = float64_summary(report)
    return "" if summary is None else f". {summary[0].upper()}{summary[1:]}"


def _add_tensorrt(
    model: VideoSlotModel, out: Path, manifest: Manifest, options: ExportOptions, video: np.ndarray
) -> Manifest:
    from service.backends import tensorrt_backend
    from service.backends.onnx_backend import DEFAULT_CACHE_SUBDIR

    # The engines' profile ends at max_batch_size: check parity only at batch sizes it covers.
    limit = options.max_batch_size
    batch_sizes = tuple(size for size in options.batch_sizes if size <= limit) or (1,)
    video = video[:, :limit]  # [T, B, 3, H, W] -> at most max_batch_size videos at once
    # Settings from the export's own options, never from SLOTSTREAM_TENSORRT_* variables: the engines checked
    # here must be those a server builds for this export, in the folder deleted below on failure.
    settings = tensorrt_backend.TensorRTOptions(fp16=options.fp16, cache_dir=out / DEFAULT_CACHE_SUBDIR)
    engine = tensorrt_backend.load_engine(
        out, name=out.name, device="cuda:0", max_batch_size=limit, options=settings, check_parity=False
    )
    build = engine.build.to_record()  # which engines were checked: a server building others says so
    try:
        report = _checked_parity(model, engine, f"tensorrt ({manifest.precision})", video, batch_sizes, options.fp16)
    except ParityFailed as failed:
        # Record the failure, which the tensorrt backend then refuses to serve, and delete the engines of this
        # precision (engines of the other one, timing caches and ONNX Runtime's engine cache stay).
        recorded = dataclasses.replace(failed.report, build=build)
        write_manifest(out, dataclasses.replace(manifest, parity={**manifest.parity, "tensorrt": recorded}))
        for engine_file in tensorrt_backend.cached_engines(out / DEFAULT_CACHE_SUBDIR, manifest.precision):
            engine_file.unlink(missing_ok=True)
        raise ExportError(
            f"{failed}; its TensorRT engines were deleted and the manifest records the failure, so the tensorrt "
            "backend refuses this export (the checked ONNX graphs still serve with --backend onnx on --device cpu or "
            "cuda)"
        ) from failed
    finally:
        engine.close()
    report = dataclasses.replace(report, build=build)
    manifest = dataclasses.replace(manifest, parity={**manifest.parity, "tensorrt": report})
    write_manifest(out, manifest)
    return manifest


def _manifest(
    model: VideoSlotModel,
    source: Path,
    version: str,
    options: ExportOptions,
    graphs: dict[str, GraphSpec],
    parity: dict[str, ParityReport],
    tensorrt_problems: list[str],
) -> Manifest:
    import onnx
    import onnxscript

    return Manifest(
        input=_frames_input(model),
        num_slots=model.num_slots,
        slot_dim=model.slot_dim,
        mask_size=model.mask_grid,
        first_iters=model.first_iters,
        later_iters=model.later_iters,
        opset=options.opset,
        precision="fp16" if options.fp16 else "fp32",
        graphs=graphs,
        source=SourceSpec(version=version, weights_sha256=_sha256(source / WEIGHTS_FILE), config=model.config),
        parity=parity,
        exporter={
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxscript": onnxscript.__version__,
            "method": "torch.onnx.export(dynamo=False) + onnxscript.optimizer",
        },
        tensorrt_ops_source=TENSORRT_OPS_SOURCE,
        tensorrt_problems=tensorrt_problems,
        usage=usage_block(model),
    )


def _frames_input(model: VideoSlotModel) -> InputSpec:
    """The manifest's ``input``: what the ``frames`` input of ``model``'s graphs holds."""
    from service.images import PREPROCESSING

    height, width = model.image_size
    encoder = model.specs["encoder"].name
    return InputSpec(
        height=height,
        width=width,
        outside_graph=f"{PREPROCESSING} (as the service does it); batched as float32 NCHW",
        inside_graph=_INSIDE_GRAPH.get(encoder, f"the {encoder} encoder's own normalisation, inside the graph"),
        frame_fit=model.frame_fit,
    )


def _input_specs(model: VideoSlotModel, which: str) -> list[TensorSpec]:
    height, width = model.image_size
    shapes: dict[str, list[int | str]] = {
        "frames": [BATCH_AXIS, 3, height, width],
        "prev_slots": [BATCH_AXIS, model.num_slots, model.slot_dim],
    }
    return [TensorSpec(name, shapes[name]) for name in input_names(which)]


def _output_specs(model: VideoSlotModel) -> list[TensorSpec]:
    return [TensorSpec(name, shape) for name, shape in output_shapes(model).items()]


def _check_signature(which: str, proto: onnx.ModelProto, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
    """The graph's inputs and outputs must be the expected ones, with a symbolic (dynamic) batch axis."""
    expected = [(spec.name, spec.shape) for spec in (*inputs, *outputs)]
    declared_inputs, declared_outputs = graph_signature(proto)
    actual = [*declared_inputs, *declared_outputs]
    if actual != expected:
        raise ExportError(f"the {which} graph's signature is {actual}, expected {expected} (batch must be dynamic)")


def _sha256(path: Path) -> str:
    return file_sha256(path)
