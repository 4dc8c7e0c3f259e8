"""The ``tensorrt`` backend: what can be checked without a GPU, and the GPU path (skipped without one).

Without TensorRT and a GPU: refusal messages, device parsing, options, engine cache keys and paths, CUDA-graph
batch buckets, and that the server refuses to start. With them (``-m gpu`` on a GPU machine): engines build
at load time, match PyTorch, are reused from the cache, and CUDA graphs give the same results.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import SERVICE_TINY_MODEL as TINY_MODEL
from service_helpers import quick_export, save_tiny_model

from plugins import VideoSlotModel
from service.backends.tensorrt_backend import BuildSpec, EngineBuild, TensorRTOptions, parse_cuda_device
from service.backends.tensorrt_graphs import batch_buckets, bucket_for
from service.engine import BackendUnavailable, load_engine

pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")

NEEDS_GPU = "needs an NVIDIA GPU and TensorRT (the gpu extra: README, TensorRT on a GPU machine)"
HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAVE_GPU = HAVE_TENSORRT and torch.cuda.is_available()
gpu = pytest.mark.skipif(not HAVE_GPU, reason=NEEDS_GPU)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quick_export(save_tiny_model(tmp_path_factory.mktemp("source")), tmp_path_factory.mktemp("export"))


SPEC = BuildSpec(
    graph="step",
    graph_sha256="ab" * 32,
    inputs={"frames": (3, 24, 24), "prev_slots": (4, 16)},
    max_batch_size=16,
    fp16=False,
    tensorrt_version="10.15.1",
    gpu="NVIDIA H100 sm_90",
)
BUILD = EngineBuild.of(SPEC)


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed")
def test_refuses_to_start_without_tensorrt_naming_the_gpu_extra(export_dir):
    with pytest.raises(BackendUnavailable, match="the tensorrt package is not installed") as refused:
        load_engine("tensorrt", export_dir, name="tiny", device="cuda:0", max_batch_size=4)
    assert (
        "pip uninstall -y onnxruntime onnxruntime-gpu, then pip install --extra-index-url https://pypi.nvidia.com "
        "-e '.[gpu]'" in str(refused.value)
    )


@pytest.mark.parametrize("device", ["cpu", "tensorrt:0", "cuda:x"])
def test_refuses_devices_other_than_cuda(export_dir, device):
    with pytest.raises(BackendUnavailable, match="runs on an NVIDIA GPU"):
        load_engine("tensorrt", export_dir, name="tiny", device=device, max_batch_size=4)


def test_parse_cuda_device():
    assert parse_cuda_device("cuda") == 0 and parse_cuda_device("cuda:3") == 3


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed")
def test_server_does_not_start_and_says_why(export_dir):
    """``python -m service --backend tensorrt`` exits with status 2 before listening, naming the extra."""
    command = [sys.executable, "-m", "service", "--model-dir", str(export_dir), "--backend", "tensorrt"]
    command += ["--device", "cuda:0", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--log-format", "text"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert ".[gpu]" in done.stderr and "cannot load the model" in done.stderr


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed")
def test_export_with_tensorrt_says_what_is_missing_before_exporting_anything(export_dir, tmp_path, capsys):
    """Refused up front: not after minutes of export and parity, with a published export and a failed status."""
    from training.export.__main__ import main as export_main

    source = tmp_path / "model"
    VideoSlotModel.from_pretrained(export_dir).save_pretrained(source)
    assert export_main(["--model", str(source), "--out", str(tmp_path / "out"), "--tensorrt"]) == 1
    assert ".[gpu]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_options_from_the_environment(tmp_path):
    environ = {
        "SLOTSTREAM_TENSORRT_FP16": "1",
        "SLOTSTREAM_TENSORRT_CACHE_DIR": str(tmp_path),
        "SLOTSTREAM_TENSORRT_CUDA_GRAPHS": "on",
        "SLOTSTREAM_TENSORRT_WORKSPACE_MB": "256",
    }
    assert TensorRTOptions.from_environ(environ) == TensorRTOptions(True, tmp_path, True, 256)
    assert TensorRTOptions.from_environ({}) == TensorRTOptions()
    with pytest.raises(ValueError, match="SLOTSTREAM_TENSORRT_CUDA_GRAPHS='maybe'"):
        TensorRTOptions.from_environ({"SLOTSTREAM_TENSORRT_CUDA_GRAPHS": "maybe"})
    with pytest.raises(ValueError, match="workspace_mb"):
        TensorRTOptions(workspace_mb=0)


def _export_with_stand_in_engines(export_dir: Path, out: Path, options: Any, monkeypatch: Any) -> list[Any]:
    """Export ``export_dir``'s model to ``out`` with ``--tensorrt`` where TensorRT engines are stood in for by ONNX
    Runtime on the CPU (no GPU here), each reporting :data:`BUILD` at the batch size it was asked for; returns the
    TensorRT options the exporter asked for, one per load."""
    from service.backends import onnx_backend, tensorrt_backend
    from training.export import export_model, exporter

    asked = []

    def stand_in(model_dir, *, name, device, max_batch_size, options=None, check_parity=True):
        assert not check_parity, "the exporter checks the engines it loads itself (no 'not compared' warning)"
        asked.append(options)
        engine = onnx_backend.load_engine(model_dir, name=name, device="cpu", max_batch_size=max_batch_size)
        engine.build = dataclasses.replace(BUILD, max_batch_size=max_batch_size)  # what TensorRTEngine reports
        return engine

    monkeypatch.setattr(tensorrt_backend, "load_engine", stand_in)
    monkeypatch.setattr(exporter, "_check_tensorrt_available", lambda: None)  # no TensorRT or GPU here
    source = out.parent / f"{out.name}-source"
    VideoSlotModel.from_pretrained(export_dir).save_pretrained(source)
    export_model(source, out, options)
    return asked


def test_export_builds_its_engines_with_its_own_settings_not_the_servers_variables(export_dir, tmp_path, monkeypatch):
    """``export --tensorrt --fp16`` must check fp16 engines in ``<out>/tensorrt`` whatever the
    ``SLOTSTREAM_TENSORRT_*`` variables say (they configure servers). Without a GPU the engine is stood in for by
    ONNX Runtime on the CPU; what is checked is the settings the export asks TensorRT for."""
    from training.export import ExportOptions

    monkeypatch.setenv("SLOTSTREAM_TENSORRT_FP16", "0")
    monkeypatch.setenv("SLOTSTREAM_TENSORRT_CACHE_DIR", str(tmp_path / "server-cache"))
    out = tmp_path / "out"
    asked = _export_with_stand_in_engines(
        export_dir, out, ExportOptions(fp16=True, tensorrt=True, parity_frames=2, batch_sizes=(1,)), monkeypatch
    )
    assert len(asked) == 1 and isinstance(asked[0], TensorRTOptions)
    assert asked[0].fp16 is True and asked[0].cache_dir == out / "tensorrt"


def test_engine_cache_key_changes_with_everything_the_engine_depends_on(tmp_path):
    assert SPEC.key() == dataclasses.replace(SPEC).key() and len(SPEC.key()) == 16
    changes = {
        "graph_sha256": "cd" * 32,
        "max_batch_size": 8,
        "fp16": True,
        "tensorrt_version": "10.16.0",
        "gpu": "NVIDIA L4 sm_89",
        "inputs": {"frames": (3, 32, 32), "prev_slots": (4, 16)},
        "tf32": True,
    }
    for field, value in changes.items():
        assert dataclasses.replace(SPEC, **{field: value}).key() != SPEC.key(), field
    path = SPEC.engine_path(tmp_path)
    assert path.parent == tmp_path and path.name == f"step-b16-fp32-{SPEC.key()}.engine"
    assert "fp16" in dataclasses.replace(SPEC, fp16=True).engine_path(tmp_path).name


def test_timing_cache_is_shared_by_graphs_but_not_across_gpus_or_tensorrt_versions(tmp_path):
    """TensorRT's timings hold only for the device and version that measured them."""
    path = SPEC.timing_cache_path(tmp_path)
    assert path.parent == tmp_path and path.suffix == ".cache"
    for same in ({"graph": "first_step"}, {"graph_sha256": "cd" * 32}, {"fp16": True}, {"max_batch_size": 8}):
        assert dataclasses.replace(SPEC, **same).timing_cache_path(tmp_path) == path, same
    for other in ({"tensorrt_version": "10.16.0"}, {"gpu": "NVIDIA L4 sm_89"}):
        assert dataclasses.replace(SPEC, **other).timing_cache_path(tmp_path) != path, other


@pytest.mark.parametrize(
    ("maximum", "buckets"), [(1, [1]), (8, [1, 2, 4, 8]), (12, [1, 2, 4, 8, 12]), (16, [1, 2, 4, 8, 16])]
)
def test_cuda_graph_buckets_cover_every_batch_size(maximum, buckets):
    assert batch_buckets(maximum) == buckets
    for batch in range(1, maximum + 1):
        size = bucket_for(batch, buckets)
        assert size >= batch and size in buckets
    with pytest.raises(ValueError):
        bucket_for(maximum + 1, buckets)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_engines_build_match_pytorch_and_are_cached(export_dir, tmp_path, cuda_graphs):
    from service.backends import tensorrt_backend

    options = TensorRTOptions(cache_dir=tmp_path, cuda_graphs=cuda_graphs)
    engine = tensorrt_backend.load_engine(export_dir, name="tiny", device="cuda:0", max_batch_size=8, options=options)
    reference = load_engine("torch", export_dir, name="tiny", device="cpu", max_batch_size=8)
    for batch in (1, 3, 8):
        frames = np.random.default_rng(batch).random((batch, 3, *TINY_MODEL["image_size"]), dtype=np.float32)
        ours, want = engine.first_step(frames), reference.first_step(frames)
        np.testing.assert_allclose(ours.slots, want.slots, atol=1e-4, rtol=0)  # fp32 engines: no TF32
        later, later_want = engine.step(frames, ours.state), reference.step(frames, want.state)
        np.testing.assert_allclose(later.masks, later_want.masks, atol=1e-4, rtol=0)
    engines = sorted(tmp_path.glob("*.engine"))
    assert len(engines) == 2 and len(list(tmp_path.glob("timing-*.cache"))) == 1
    stamps = [p.stat().st_mtime_ns for p in engines]
    tensorrt_backend.load_engine(export_dir, name="tiny", device="cuda:0", max_batch_size=8, options=options)
    assert [p.stat().st_mtime_ns for p in engines] == stamps, "a cached engine was rebuilt"


@gpu
@pytest.mark.gpu
def test_the_engines_refuse_empty_and_mismatched_batches(export_dir, tmp_path):
    from service.backends import tensorrt_backend

    options = TensorRTOptions(cache_dir=tmp_path)
    engine = tensorrt_backend.load_engine(export_dir, name="tiny", device="cuda:0", max_batch_size=8, options=options)
    frames = np.random.default_rng(0).random((3, 3, *TINY_MODEL["image_size"]), dtype=np.float32)
    with pytest.raises(ValueError, match="a call needs at least one frame"):
        engine.first_step(frames[:0])
    with pytest.raises(ValueError, match="step got 1 frames but states of 3 streams"):
        engine.step(frames[:1], engine.first_step(frames).state)


def test_engines_that_fail_parity_at_export_are_deleted_and_recorded(export_dir, tmp_path, monkeypatch):
    """Only the engines of the failed precision go: the other precision's engines, the timing cache and ONNX
    Runtime's engine cache stay. TensorRT is stood in for by ONNX Runtime with its slots shifted by 0.01."""
    from service.backends import onnx_backend, tensorrt_backend
    from training.export import ExportError, ExportOptions, export_model, exporter, read_manifest

    class Shifted:
        def __init__(self, engine):
            self.engine = engine
            self.build = BUILD

        def first_step(self, frames):
            out = self.engine.first_step(frames)
            return dataclasses.replace(out, slots=out.slots + 0.01)

        def step(self, frames, state):
            out = self.engine.step(frames, state)
            return dataclasses.replace(out, slots=out.slots + 0.01)

        def close(self):
            self.engine.close()

    kept = ["first_step-b16-fp16-0123.engine", "timing-abcd.cache", "onnxruntime/0123/cached.engine"]

    def stand_in(model_dir, *, name, device, max_batch_size, options=None, check_parity=True):
        for relative in (*kept, "first_step-b16-fp32-4567.engine", "step-b16-fp32-4567.engine"):
            (options.cache_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            (options.cache_dir / relative).write_bytes(b"engine")
        return Shifted(onnx_backend.load_engine(model_dir, name=name, device="cpu", max_batch_size=max_batch_size))

    monkeypatch.setattr(tensorrt_backend, "load_engine", stand_in)
    monkeypatch.setattr(exporter, "_check_tensorrt_available", lambda: None)  # no TensorRT or GPU here
    source = tmp_path / "model"
    VideoSlotModel.from_pretrained(export_dir).save_pretrained(source)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="TensorRT engines were deleted"):
        export_model(source, out, ExportOptions(tensorrt=True, parity_frames=2, batch_sizes=(1,)))
    cache = out / "tensorrt"
    assert sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()) == sorted(kept)
    assert read_manifest(out).parity["tensorrt"].passed is False
    assert read_manifest(out).parity["tensorrt"].build == BUILD.to_record(), "the failed build is named"


@pytest.mark.parametrize(("backend", "device"), [("tensorrt", "cuda:0"), ("onnx", "tensorrt:0")])
def test_an_export_whose_engines_failed_parity_is_refused(export_dir, tmp_path, backend, device):
    """``--tensorrt`` records a failed parity check in the manifest; the tensorrt backend, and ONNX Runtime's
    TensorRT provider, then refuse the export (before looking for TensorRT or a GPU)."""
    import shutil

    from service.backends.manifest import write_manifest
    from training.export import read_manifest

    failed_dir = tmp_path / "failed"
    shutil.copytree(export_dir, failed_dir)
    manifest = read_manifest(failed_dir)
    assert manifest.precision == "fp32"
    measured = dataclasses.replace(manifest.parity["onnxruntime"], runtime="tensorrt (fp32)", passed=False)
    write_manifest(failed_dir, dataclasses.replace(manifest, parity={**manifest.parity, "tensorrt": measured}))
    with pytest.raises(BackendUnavailable, match=r"fp32 TensorRT engines failed the export's parity.*--backend onnx"):
        load_engine(backend, failed_dir, name="tiny", device=device, max_batch_size=4)


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed: the load would go on to build engines")
def test_a_failed_check_at_one_precision_does_not_refuse_engines_of_the_other(export_dir, tmp_path, caplog):
    """A failed fp16 check says nothing about fp32 engines: they would be built with a warning that they were not
    checked; here the load goes on to ask for TensorRT itself, and without it says only that (no warning about
    engines this machine cannot load)."""
    import shutil

    from service.backends.manifest import write_manifest
    from service.backends.tensorrt_backend import check_tensorrt_parity
    from training.export import read_manifest

    failed_dir = tmp_path / "failed-fp16"
    shutil.copytree(export_dir, failed_dir)
    manifest = read_manifest(failed_dir)
    measured = dataclasses.replace(manifest.parity["onnxruntime"], runtime="tensorrt (fp16)", passed=False)
    failed = dataclasses.replace(manifest, precision="fp16", parity={**manifest.parity, "tensorrt": measured})
    write_manifest(failed_dir, failed)  # an export --fp16 --tensorrt whose engines failed
    with pytest.raises(BackendUnavailable, match="the tensorrt package is not installed"):
        load_engine("tensorrt", failed_dir, name="tiny", device="cuda:0", max_batch_size=4, options={"fp16": False})
    assert "were not compared with PyTorch" not in caplog.text
    warning = check_tensorrt_parity(failed, failed_dir, "fp32")
    assert warning is not None and "fp32 TensorRT engines" in warning and "were not compared with PyTorch" in warning
    assert "--tensorrt checks them" in warning
    with pytest.raises(BackendUnavailable, match="fp16 TensorRT engines failed"):
        check_tensorrt_parity(failed, failed_dir, "fp16")


# --- CUDA graphs and buffers, without a GPU: TensorRT and torch.cuda stood in for (CPU tensors) -------------------


class FakeCuda:
    """The torch.cuda calls the runner makes, on the CPU: the current stream, and graphs that record the enqueues
    made while capturing and replay them."""

    def __init__(self) -> None:
        self.current = None  # the stream of the innermost torch.cuda.stream block
        self.capturing = None  # the graph being captured

    def stream(self, stream):
        cuda = self

        class Scope:
            def __enter__(self):
                self.outer, cuda.current = cuda.current, stream

            def __exit__(self, *exc):
                cuda.current = self.outer

        return Scope()

    def graph(self, graph, stream=None):
        cuda = self

        class Capture:
            def __enter__(self):
                cuda.capturing = graph

            def __exit__(self, *exc):
                cuda.capturing = None

        return Capture()


class FakeGraph:
    """A captured CUDA graph: replays the enqueues recorded during capture."""

    def __init__(self) -> None:
        self.recorded = []

    def replay(self) -> None:
        for kernel in self.recorded:
            kernel()


class DeadGraph(FakeGraph):
    """A graph whose replay runs nothing (stands in for any replay that does not reproduce a plain run)."""

    def replay(self) -> None:
        pass


class FakeStream:
    cuda_stream = 1234

    def synchronize(self) -> None:
        pass


class FakeContext:
    """A TensorRT execution context. Like TensorRT's, its state follows its input shapes: a kernel captured into
    a graph is valid only while the context keeps the shapes it had at capture (here: replayed after the shapes
    changed, it writes NaN, where TensorRT would compute with state set up for another shape)."""

    def __init__(self, engine: FakeEngine, strategy: str) -> None:
        self.engine = engine
        self.strategy = strategy
        self.addresses: dict[str, int] = {}
        self.batch = 0
        self.device_memory: tuple[int, int] | None = None

    def set_device_memory(self, address, size):
        self.device_memory = (address, size)

    def set_tensor_address(self, name, address):
        self.addresses[name] = address

    def set_input_shape(self, name, shape):
        self.batch = shape[0]

    def get_tensor_shape(self, name):
        return (self.batch, *self.engine.shapes[name])

    def execute_async_v3(self, stream):
        assert stream == FakeStream.cuda_stream
        rows = self.batch
        if self.engine.cuda.capturing is not None:
            self.engine.cuda.capturing.recorded.append(lambda: self.kernel(rows))
        else:
            self.kernel(rows)
        return True

    def kernel(self, rows: int) -> None:
        tensor = {name: self.engine.memory[address] for name, address in self.addresses.items()}
        value = tensor["frames"][:rows].mean(dim=(1, 2, 3))
        if "prev_slots" in tensor:
            value = value + tensor["prev_slots"][:rows, 0, 0]
        if rows != self.batch:  # the context's state is no longer the one the kernel was captured with
            value = value * float("nan")
        tensor["slots"][:rows] = value[:, None, None]
        tensor["masks"][:rows] = 2 * value[:, None, None, None]


class FakeEngine:
    def __init__(self, cuda: FakeCuda, memory: dict[int, torch.Tensor], step: bool) -> None:
        self.cuda = cuda
        self.memory = memory
        self.shapes = {"frames": (3, 4, 4), "slots": (2, 3), "masks": (2, 2, 2)}
        if step:
            self.shapes = {"frames": (3, 4, 4), "prev_slots": (2, 3), "slots": (2, 3), "masks": (2, 2, 2)}
        self.contexts: list[FakeContext] = []

    @property
    def num_io_tensors(self):
        return len(self.shapes)

    def get_tensor_name(self, index):
        return list(self.shapes)[index]

    def get_tensor_dtype(self, name):
        return "float"

    def get_tensor_shape(self, name):
        return (-1, *self.shapes[name])

    device_memory_size_v2 = 4096

    def create_execution_context(self, strategy="STATIC"):
        self.contexts.append(FakeContext(self, strategy))
        return self.contexts[-1]


@pytest.fixture
def fake_gpu(monkeypatch):
    """torch.cuda's stream, graph and CUDAGraph stood in for; torch.zeros records the stream it allocated on and
    keeps each buffer findable by its address (for the fake kernels). Yields a factory of runners."""
    import types

    from service.backends import tensorrt_graphs

    cuda = FakeCuda()
    memory: dict[int, torch.Tensor] = {}
    allocated_on = []
    real_zeros = torch.zeros

    def zeros(*args, **kwargs):
        tensor = real_zeros(*args, **{**kwargs, "device": "cpu"})
        memory[tensor.data_ptr()] = tensor
        allocated_on.append(cuda.current)
        return tensor

    monkeypatch.setattr(torch, "zeros", zeros)
    monkeypatch.setattr(torch.cuda, "stream", cuda.stream)
    monkeypatch.setattr(torch.cuda, "graph", cuda.graph)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    trt = types.SimpleNamespace(
        DataType=types.SimpleNamespace(FLOAT="float"),
        ExecutionContextAllocationStrategy=types.SimpleNamespace(STATIC="STATIC", USER_MANAGED="USER_MANAGED"),
    )

    def runner(step: bool = False, max_batch_size: int = 8):
        inputs = {"frames": (3, 4, 4), "prev_slots": (2, 3)} if step else {"frames": (3, 4, 4)}
        spec = dataclasses.replace(SPEC, graph="step" if step else "first_step", inputs=inputs)
        spec = dataclasses.replace(spec, max_batch_size=max_batch_size)
        engine = FakeEngine(cuda, memory, step)
        made = tensorrt_graphs.GraphRunner(trt, engine, spec, torch.device("cpu"), FakeStream())
        return made, engine

    return types.SimpleNamespace(runner=runner, allocated_on=allocated_on, cuda=cuda)


def feeds_for(batch: int, step: bool, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {"frames": rng.random((batch, 3, 4, 4), dtype=np.float32)}
    if step:
        feeds["prev_slots"] = rng.random((batch, 2, 3), dtype=np.float32)
    return feeds


@pytest.mark.parametrize("step", [False, True])
def test_each_cuda_graph_bucket_replays_on_an_execution_context_of_its_own(fake_gpu, step):
    """Capturing every bucket on one context and replaying earlier graphs after its shapes moved on to the last
    bucket gives wrong results: each bucket needs a context whose shapes stay those of its capture."""
    plain, _ = fake_gpu.runner(step)
    graphed, engine = fake_gpu.runner(step)
    graphed.capture(batch_buckets(8))
    assert len(engine.contexts) == 1 + len(batch_buckets(8)), "one context for plain runs, one per bucket"
    assert [context.batch for context in engine.contexts[1:]] == batch_buckets(8)
    for batch in range(1, 9):
        feeds = feeds_for(batch, step, seed=batch)
        want = [array.copy() for array in plain.run(feeds)]
        got = [array.copy() for array in graphed.run(feeds)]
        for ours, theirs in zip(got, want, strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6, err_msg=f"batch {batch}")
    assert [context.batch for context in engine.contexts[1:]] == batch_buckets(8), "bucket contexts never reshape"


def test_every_execution_context_of_an_engine_shares_one_block_of_activation_memory(fake_gpu):
    """A context per CUDA-graph bucket with TensorRT's default allocation would each reserve the engine's full
    activation memory; the runner's contexts run one at a time, so they share one block of the engine's size."""
    runner, engine = fake_gpu.runner()
    runner.capture(batch_buckets(8))
    blocks = {context.device_memory for context in engine.contexts}
    assert len(engine.contexts) == 1 + len(batch_buckets(8)) and len(blocks) == 1
    assert {context.strategy for context in engine.contexts} == {"USER_MANAGED"}
    ((address, size),) = blocks
    assert size == engine.device_memory_size_v2 and address != 0


def test_a_cuda_graph_that_does_not_reproduce_a_plain_run_is_refused_at_start_up(fake_gpu, monkeypatch):
    """Each bucket's replay is compared with a plain execute_async_v3 run on the same inputs before serving."""
    runner, _ = fake_gpu.runner()
    monkeypatch.setattr(torch.cuda, "CUDAGraph", DeadGraph)
    with pytest.raises(RuntimeError, match=r"CUDA graph of batch bucket 1 does not reproduce a plain TensorRT run"):
        runner.capture(batch_buckets(8))


def test_buffers_are_allocated_on_the_stream_the_engine_runs_on(fake_gpu):
    """torch.zeros fills the buffers on the current stream: on the default stream, nothing would order that fill
    before TensorRT's first use of them on the runner's side stream."""
    fake_gpu.runner(step=True)
    assert len(fake_gpu.allocated_on) == 4
    assert all(isinstance(stream, FakeStream) for stream in fake_gpu.allocated_on), fake_gpu.allocated_on


# --- the build the export checked, against the build a server makes ----------------------------------------------


def with_tensorrt_record(export_dir: Path, directory: Path, build: dict, passed: bool = True) -> Path:
    """A copy of ``export_dir`` whose manifest records a TensorRT parity check of ``build``."""
    import shutil

    from service.backends.manifest import write_manifest
    from training.export import read_manifest

    shutil.copytree(export_dir, directory)
    manifest = read_manifest(directory)
    measured = dataclasses.replace(
        manifest.parity["onnxruntime"], runtime="tensorrt (fp32)", passed=passed, build=build
    )
    write_manifest(directory, dataclasses.replace(manifest, parity={**manifest.parity, "tensorrt": measured}))
    return directory


def test_export_with_tensorrt_records_the_build_it_checked(export_dir, tmp_path, monkeypatch):
    """The parity record names the engines it measured (precision, batch profile, TensorRT version, GPU, TF32)."""
    from training.export import ExportOptions, read_manifest

    out = tmp_path / "out"
    options = ExportOptions(tensorrt=True, max_batch_size=8, parity_frames=2, batch_sizes=(1,))
    _export_with_stand_in_engines(export_dir, out, options, monkeypatch)
    recorded = read_manifest(out).parity["tensorrt"].build
    assert recorded == dataclasses.replace(BUILD, max_batch_size=8).to_record()
    assert EngineBuild.from_record(recorded) == dataclasses.replace(BUILD, max_batch_size=8)
    from training.export.__main__ import summary

    assert "built for gpu NVIDIA H100 sm_90, max_batch_size 8, precision fp32" in summary(read_manifest(out), "out")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"max_batch_size": 32}, "--max-batch-size 32 (the export checked 16)"),
        ({"gpu": "NVIDIA L4 sm_89"}, "GPU NVIDIA L4 sm_89 (the export checked NVIDIA H100 sm_90)"),
        ({"tensorrt_version": "10.16.1"}, "TensorRT 10.16.1 (the export checked 10.15.1)"),
    ],
)
def test_engines_of_another_build_than_the_export_checked_are_served_with_a_warning(
    export_dir, tmp_path, change, named
):
    """The engine cache key includes the batch profile, GPU and TensorRT version: engines built for other ones
    were never compared with PyTorch, and the server says so (the README's promise), naming what differs."""
    from service.backends.tensorrt_backend import tensorrt_parity_warning
    from training.export import read_manifest

    checked = with_tensorrt_record(export_dir, tmp_path / "checked", BUILD.to_record())
    manifest = read_manifest(checked)
    assert tensorrt_parity_warning(manifest, checked, BUILD) is None, "the engines the export checked"
    warning = tensorrt_parity_warning(manifest, checked, dataclasses.replace(BUILD, **change))
    assert warning is not None and named in warning and "served unchecked" in warning
    assert "python -m training.export --tensorrt --max-batch-size" in warning


def test_an_export_that_recorded_no_build_warns_that_its_engines_may_not_be_the_checked_ones(export_dir, tmp_path):
    from service.backends.tensorrt_backend import tensorrt_parity_warning
    from training.export import read_manifest

    older = with_tensorrt_record(export_dir, tmp_path / "older", {})  # an export made before builds were recorded
    warning = tensorrt_parity_warning(read_manifest(older), older, BUILD)
    assert warning is not None and "does not say which engines it checked" in warning


def test_a_failed_check_is_refused_whatever_the_build(export_dir, tmp_path):
    from service.backends.tensorrt_backend import tensorrt_parity_warning
    from training.export import read_manifest

    failed = with_tensorrt_record(export_dir, tmp_path / "failed", BUILD.to_record(), passed=False)
    with pytest.raises(BackendUnavailable, match="fp32 TensorRT engines failed the export's parity check"):
        tensorrt_parity_warning(read_manifest(failed), failed, dataclasses.replace(BUILD, max_batch_size=4))


def test_engine_build_records_round_trip_and_name_their_differences():
    assert EngineBuild.from_record(BUILD.to_record()) == BUILD
    assert EngineBuild.from_record({}) is None and EngineBuild.from_record({"precision": "fp32"}) is None
    assert BUILD.differences(BUILD) == []
    other = dataclasses.replace(BUILD, precision="fp16", tf32=True)
    assert other.differences(BUILD) == [
        "precision fp16 (the export checked fp32)",
        "TF32 True (the export checked False)",
    ]
