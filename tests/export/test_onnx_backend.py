"""The ``onnx`` backend: engine contract against the torch backend, provider selection and verification, options.

GPU providers cannot load on the CI machines; what can be checked without a GPU is: the provider list built
for each ``--device``, the refusal when the installed onnxruntime lacks a provider, and the refusal when
ONNX Runtime silently falls back to the CPU (reproduced here by making a CPU-only onnxruntime claim CUDA).
"""

from __future__ import annotations

import asyncio
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import SERVICE_TINY_MODEL as TINY_MODEL
from service_helpers import quick_export, save_tiny_model

from plugins import VideoSlotModel
from service.backends import onnx_backend, onnx_providers
from service.backends.manifest import ManifestError
from service.backends.onnx_backend import OnnxOptions, prepare_cache_dir
from service.backends.onnx_providers import ProviderChoice, parse_device, provider_list, verify_providers
from service.config import ServiceConfig
from service.engine import BackendUnavailable, load_engine
from service.runner import ModelRunner
from service.server import default_engine_factory

ort = pytest.importorskip("onnxruntime", reason="needs ONNX Runtime: pip install -e '.[onnx]'")

#: The README's GPU install steps ("TensorRT on a GPU machine"), which every GPU refusal gives.
GPU_EXTRA = (
    "pip uninstall -y onnxruntime onnxruntime-gpu, then pip install --extra-index-url https://pypi.nvidia.com "
    "-e '.[gpu]'"
)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quick_export(save_tiny_model(tmp_path_factory.mktemp("source")), tmp_path_factory.mktemp("export"))


def frames(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, 3, *TINY_MODEL["image_size"]), dtype=np.float32)


def test_card_matches_the_torch_backend(export_dir):
    onnx_engine = load_engine("onnx", export_dir, name="tiny", device="cpu", max_batch_size=8)
    torch_engine = load_engine("torch", export_dir, name="tiny", device="cpu", max_batch_size=8)
    assert onnx_engine.card.backend == "onnx" and onnx_engine.card.device == "cpu"
    fields = ("version", "image_size", "num_slots", "slot_dim", "mask_size", "max_batch_size", "preprocessing")
    for name in fields:
        assert getattr(onnx_engine.card, name) == getattr(torch_engine.card, name), name


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_engine_matches_torch_at_every_batch_size_and_rows_are_independent(export_dir, batch):
    onnx_engine = load_engine("onnx", export_dir, name="tiny", device="cpu", max_batch_size=8)
    torch_engine = load_engine("torch", export_dir, name="tiny", device="cpu", max_batch_size=8)
    x = frames(batch, seed=batch)
    ours, reference = onnx_engine.first_step(x), torch_engine.first_step(x)
    later, later_reference = onnx_engine.step(x, ours.state), torch_engine.step(x, reference.state)
    for got, want in ((ours, reference), (later, later_reference)):
        np.testing.assert_allclose(got.slots, want.slots, atol=1e-5, rtol=0)
        np.testing.assert_allclose(got.masks, want.masks, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(got.state, got.slots)
        assert got.slots.dtype == got.masks.dtype == np.float32
    alone = onnx_engine.step(x[-1:], ours.state[-1:])
    np.testing.assert_allclose(alone.slots[0], later.slots[-1], atol=1e-5, rtol=0)


def test_engine_contract_basics(export_dir):
    """Masks sum to 1 over slots, calls are deterministic, warm-up runs, parallel CPU calls are allowed."""
    engine = load_engine("onnx", export_dir, name="tiny", device="cpu", max_batch_size=4)
    first = engine.first_step(frames(4))
    np.testing.assert_allclose(first.masks.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(engine.step(frames(4), first.state).slots, engine.step(frames(4), first.state).slots)
    engine.warmup([1, 4])
    assert engine.max_concurrency > 1


def test_state_is_not_an_alias_of_the_slots(export_dir):
    engine = load_engine("onnx", export_dir, name="tiny", device="cpu", max_batch_size=2)
    out = engine.first_step(frames(2))
    out.slots[:] = 0
    assert np.abs(out.state).sum() > 0


def test_closed_engine_refuses_calls(export_dir):
    engine = load_engine("onnx", export_dir, name="tiny", device="cpu", max_batch_size=2)
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.first_step(frames(1))


def test_a_plain_model_directory_is_refused_with_the_export_command(tmp_path):
    VideoSlotModel(**TINY_MODEL).save_pretrained(tmp_path)
    with pytest.raises(ManifestError, match=r"python -m training\.export --model"):
        load_engine("onnx", tmp_path, name="tiny", device="cpu", max_batch_size=2)


@pytest.mark.parametrize(
    ("device", "choice"),
    [
        ("cpu", ProviderChoice("cpu", 0)),
        ("cpu:0", ProviderChoice("cpu", 0)),  # torch's spelling of the same device
        ("cuda", ProviderChoice("cuda", 0)),
        ("CUDA:1", ProviderChoice("cuda", 1)),
        ("tensorrt:2", ProviderChoice("tensorrt", 2)),
    ],
)
def test_parse_device(device, choice):
    assert parse_device(device) == choice


@pytest.mark.parametrize("device", ["gpu", "cpu:1", "cuda:x", "mps"])
def test_parse_device_rejects(device):
    with pytest.raises(ValueError, match=r"use cpu \(or cpu:0\), cuda\[:N\] or tensorrt\[:N\]"):
        parse_device(device)


def test_provider_lists(tmp_path):
    inputs = {"frames": (3, 24, 24), "prev_slots": (4, 16)}
    assert provider_list(ProviderChoice("cpu"), inputs, 8, False, tmp_path) == [("CPUExecutionProvider", {})]
    cuda = provider_list(ProviderChoice("cuda", 1), inputs, 8, False, tmp_path)
    assert [name for name, _ in cuda] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert cuda[0][1] == {"device_id": "1", "use_tf32": "0"}  # fp32 graphs: no TF32
    # --fp16 is about TensorRT engines: the CUDA provider stays without TF32 under it too.
    assert provider_list(ProviderChoice("cuda", 1), inputs, 8, True, tmp_path)[0][1] == cuda[0][1]
    trt = provider_list(ProviderChoice("tensorrt", 0), inputs, 8, True, tmp_path)
    assert [name for name, _ in trt] == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    options = trt[0][1]
    assert options["trt_fp16_enable"] == "True" and options["trt_engine_cache_enable"] == "True"
    assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"] == str(tmp_path)
    assert options["trt_profile_min_shapes"] == "frames:1x3x24x24,prev_slots:1x4x16"
    assert options["trt_profile_max_shapes"] == "frames:8x3x24x24,prev_slots:8x4x16"


def test_missing_gpu_provider_is_refused_with_the_extra_to_install(export_dir):
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider") as refused:
        load_engine("onnx", export_dir, name="tiny", device="cuda:0", max_batch_size=2)
    assert GPU_EXTRA in str(refused.value)


@pytest.mark.parametrize("device", ["cuda:0", "tensorrt:0"])
def test_silent_cpu_fallback_is_detected(export_dir, device, monkeypatch, tmp_path):
    """onnxruntime-gpu without working CUDA libraries lists the provider but runs on the CPU: refuse."""
    claimed = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: claimed)
    stand_in_tensorrt(monkeypatch)
    options = OnnxOptions(tensorrt_cache_dir=tmp_path / "cache")
    with pytest.raises(BackendUnavailable, match="would run silently on the CPU") as refused:
        onnx_backend.load_engine(export_dir, name="tiny", device=device, max_batch_size=2, options=options)
    assert "providers in use: CPUExecutionProvider" in str(refused.value) and GPU_EXTRA in str(refused.value)


def test_tensorrt_provider_caches_engines_per_graph_digest(export_dir, monkeypatch, tmp_path):
    """ONNX Runtime names cached TensorRT engines after a graph's structure and names, not its weights, so a
    re-export with new weights (or another model of the same architecture sharing the cache volume) would load
    stale engines. Each graph gets a cache folder named by its file digest. The TensorRT provider itself cannot
    run here (no GPU): the session records the options it was given and claims that provider."""
    from training.export import read_manifest

    given: dict[str, dict[str, str]] = {}

    claimed = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    real_session = ort.InferenceSession

    class RecordingSession:
        def __init__(self, path, options, providers):
            given[Path(path).stem] = dict(providers[0][1])
            self._graph = real_session(path, options, providers=["CPUExecutionProvider"])

        def get_providers(self):
            return claimed

        def get_inputs(self):
            return self._graph.get_inputs()

        def get_outputs(self):
            return self._graph.get_outputs()

        def get_modelmeta(self):
            return self._graph.get_modelmeta()

    monkeypatch.setattr(ort, "get_available_providers", lambda: claimed)
    monkeypatch.setattr(ort, "InferenceSession", RecordingSession)
    stand_in_tensorrt(monkeypatch)
    options = OnnxOptions(tensorrt_cache_dir=tmp_path / "cache")
    onnx_backend.load_engine(export_dir, name="tiny", device="tensorrt:0", max_batch_size=2, options=options)
    manifest = read_manifest(export_dir)
    for graph in ("first_step", "step"):
        folder = tmp_path / "cache" / "onnxruntime" / manifest.graphs[graph].sha256[:16]
        assert given[graph]["trt_engine_cache_path"] == given[graph]["trt_timing_cache_path"] == str(folder)
        assert folder.is_dir()
    assert given["first_step"]["trt_engine_cache_path"] != given["step"]["trt_engine_cache_path"]


def test_a_damaged_graph_is_refused_naming_the_file(export_dir, tmp_path):
    """A damaged graph whose digest was recorded after the damage (so the digest check passes) is refused when
    the backend reads it against its manifest entry, before ONNX Runtime sees it, naming the file."""
    import json
    import shutil

    from service.backends.manifest import MANIFEST_FILE, file_sha256

    damaged = tmp_path / "damaged"
    shutil.copytree(export_dir, damaged)
    graph = damaged / "step.onnx"
    graph.write_bytes(graph.read_bytes()[:500])
    raw = json.loads((damaged / MANIFEST_FILE).read_text())
    raw["graphs"]["step"]["sha256"] = file_sha256(graph)
    (damaged / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=r"step\.onnx is not a readable ONNX graph"):
        onnx_backend.load_engine(damaged, name="tiny", device="cpu", max_batch_size=2)


def test_a_graph_onnx_runtime_cannot_load_is_refused_naming_the_file(export_dir, tmp_path):
    """A graph that reads and matches its manifest entry but holds an operator ONNX Runtime does not know fails in
    ONNX Runtime with errors that are not ``RuntimeError``; the backend reports it as unavailable, naming the file."""
    import hashlib
    import json
    import shutil

    import onnx

    from service.backends.manifest import MANIFEST_FILE
    from training.export.operators import check_operators

    edited = tmp_path / "edited"
    shutil.copytree(export_dir, edited)
    proto = onnx.load(str(edited / "step.onnx"))
    proto.graph.node[0].op_type = "NoSuchOperator"
    onnx.save(proto, str(edited / "step.onnx"))
    raw = json.loads((edited / MANIFEST_FILE).read_text())
    raw["graphs"]["step"]["sha256"] = hashlib.sha256((edited / "step.onnx").read_bytes()).hexdigest()
    raw["graphs"]["step"]["operators"] = check_operators(proto).operators
    (edited / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(BackendUnavailable, match=r"ONNX Runtime cannot load .*step\.onnx"):
        onnx_backend.load_engine(edited, name="tiny", device="cpu", max_batch_size=2)


def test_verify_providers_accepts_the_requested_provider_first():
    verify_providers(ProviderChoice("cuda"), ["CUDAExecutionProvider", "CPUExecutionProvider"], "g.onnx")
    with pytest.raises(BackendUnavailable, match="TensorRT libraries"):
        verify_providers(ProviderChoice("tensorrt"), ["CUDAExecutionProvider", "CPUExecutionProvider"], "g.onnx")


def test_cache_dir_must_be_writable(tmp_path):
    assert prepare_cache_dir(tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(BackendUnavailable, match="SLOTSTREAM_TENSORRT_CACHE_DIR"):
        prepare_cache_dir(tmp_path / "file" / "cache")


def test_cache_dir_check_leaves_no_file_and_tolerates_other_replicas_probing_it(tmp_path):
    """Replicas sharing one cache volume check it at the same moment: another pod's probe file (here a folder
    that stays, the worst case) must not make this pod's check fail."""
    shared = tmp_path / "engines"
    shared.mkdir()
    (shared / ".write-test").mkdir()  # the probe name of a pod that is checking the folder right now
    assert prepare_cache_dir(shared) == shared
    assert sorted(p.name for p in shared.iterdir()) == [".write-test"], "the check leaves nothing behind"


def test_options_from_the_environment(tmp_path):
    environ = {
        "SLOTSTREAM_ONNX_INTRA_OP_THREADS": "2",
        "SLOTSTREAM_ONNX_INTER_OP_THREADS": "3",
        "SLOTSTREAM_ONNX_GRAPH_OPTIMIZATION": "basic",
        "SLOTSTREAM_TENSORRT_FP16": "yes",
        "SLOTSTREAM_TENSORRT_CACHE_DIR": str(tmp_path),
        "SLOTSTREAM_ONNX_UNRELATED": "ignored",
    }
    assert OnnxOptions.from_environ(environ) == OnnxOptions(2, 3, "basic", True, tmp_path)
    assert OnnxOptions.from_environ({}) == OnnxOptions()
    with pytest.raises(ValueError, match="SLOTSTREAM_ONNX_INTRA_OP_THREADS='many'"):
        OnnxOptions.from_environ({"SLOTSTREAM_ONNX_INTRA_OP_THREADS": "many"})
    with pytest.raises(ValueError, match="graph_optimization"):
        OnnxOptions.from_environ({"SLOTSTREAM_ONNX_GRAPH_OPTIMIZATION": "max"})


def test_the_server_hands_its_config_to_the_onnx_sessions(export_dir, monkeypatch):
    seen: list[OnnxOptions] = []
    original = onnx_backend.session_options
    monkeypatch.setattr(
        onnx_backend, "session_options", lambda o, options: seen.append(options) or original(o, options)
    )
    config = ServiceConfig(
        model_dir=export_dir, backend="onnx", onnx_intra_op_threads=2, onnx_graph_optimization="basic", warmup=False
    )
    engine = default_engine_factory(config)
    assert engine.card.backend == "onnx"
    assert seen and all(options == OnnxOptions(2, 1, "basic") for options in seen)


def test_the_torch_thread_setting_applies_to_the_onnx_backend_too(export_dir):
    """The masks are post-processed with torch whatever runs the model, so ``--torch-threads`` bounds them there too
    (torch's default is one thread per core it sees, the whole node in a container with a CPU quota)."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        engine = default_engine_factory(ServiceConfig(model_dir=export_dir, backend="onnx", torch_threads=1))
        engine.close()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_thread_options_reach_the_sessions(export_dir):
    options = OnnxOptions(intra_op_threads=2, inter_op_threads=1, graph_optimization="extended")
    session = onnx_backend.session_options(ort, options)
    assert (session.intra_op_num_threads, session.inter_op_num_threads) == (2, 1)
    assert session.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert session.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    # Sequential execution ignores inter-op threads: asking for more than one switches to parallel execution.
    parallel = onnx_backend.session_options(ort, OnnxOptions(inter_op_threads=2))
    assert (parallel.inter_op_num_threads, parallel.execution_mode) == (2, ort.ExecutionMode.ORT_PARALLEL)
    engine = onnx_backend.load_engine(export_dir, name="tiny", device="cpu", max_batch_size=2, options=options)
    assert engine.providers == ["CPUExecutionProvider"]


def test_a_manifest_edited_together_with_its_recorded_shapes_is_caught_against_the_graphs(export_dir, tmp_path):
    """The manifest's own shapes agree with each other here; only the loaded graphs show that K is not 7 (the
    source files are left out, which would show it first)."""
    import json
    import shutil

    from service.backends.manifest import MANIFEST_FILE

    edited = tmp_path / "edited"
    shutil.copytree(export_dir, edited)
    for name in ("config.json", "model.safetensors"):
        (edited / name).unlink()
    raw = json.loads((edited / MANIFEST_FILE).read_text())
    raw["num_slots"] = 7
    for graph in raw["graphs"].values():
        for spec in (*graph["inputs"], *graph["outputs"]):
            if spec["name"] != "frames":
                spec["shape"][1] = 7
    (edited / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=r"first_step graph, first_step\.onnx, has the outputs .* but the"):
        onnx_backend.load_engine(edited, name="tiny", device="cpu", max_batch_size=2)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [("later_iters", 3, "later_iters 3"), ("input.frame_fit", "crop", "input.frame_fit 'crop'")],
)
def test_a_manifest_field_edited_against_its_config_is_refused(export_dir, tmp_path, field, value, named):
    """The export writes both from config.json: a manifest that says otherwise would make the onnx backend serve
    the model differently from the torch backend under one version."""
    import json
    import shutil

    from service.backends.manifest import MANIFEST_FILE

    edited = tmp_path / "edited"
    shutil.copytree(export_dir, edited)
    raw = json.loads((edited / MANIFEST_FILE).read_text())
    if field == "input.frame_fit":
        raw["input"]["frame_fit"] = value
    else:
        raw[field] = value
    (edited / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=rf"its manifest\.json gives {re.escape(named)}, but its config\.json"):
        onnx_backend.load_engine(edited, name="tiny", device="cpu", max_batch_size=2)


def stand_in_tensorrt(monkeypatch):
    """Give ``import tensorrt`` a stand-in module: ``--device tensorrt`` imports TensorRT before its sessions."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.15.1"))


def claim_gpu_providers(monkeypatch, in_use=None, on_session=None):
    """Make this CPU-only onnxruntime claim the GPU providers: sessions run on the CPU but report ``in_use`` (by
    default the provider they were asked for first), as onnxruntime-gpu would; ``on_session`` (if given) is called
    as each session is made."""
    claimed = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    real_session = ort.InferenceSession

    class ClaimingSession:
        def __init__(self, path, options, providers):
            if on_session is not None:
                on_session()
            self._providers = in_use or [providers[0][0], "CPUExecutionProvider"]
            self._graph = real_session(path, options, providers=["CPUExecutionProvider"])

        def get_providers(self):
            return self._providers

        def get_inputs(self):
            return self._graph.get_inputs()

        def get_outputs(self):
            return self._graph.get_outputs()

        def get_modelmeta(self):
            return self._graph.get_modelmeta()

    monkeypatch.setattr(ort, "get_available_providers", lambda: claimed)
    monkeypatch.setattr(ort, "InferenceSession", ClaimingSession)


def with_passed_tensorrt_check(export_dir: Path, directory: Path) -> Path:
    """A copy of ``export_dir`` whose manifest records a passed check of the tensorrt backend's engines."""
    import dataclasses
    import shutil

    from service.backends.manifest import write_manifest
    from training.export import read_manifest

    shutil.copytree(export_dir, directory)
    manifest = read_manifest(directory)
    measured = dataclasses.replace(manifest.parity["onnxruntime"], runtime="tensorrt (fp32)")
    write_manifest(directory, dataclasses.replace(manifest, parity={**manifest.parity, "tensorrt": measured}))
    return directory


def test_the_tensorrt_provider_says_its_engines_are_not_the_checked_ones_and_may_use_tf32(
    export_dir, tmp_path, monkeypatch, caplog
):
    """The export's --tensorrt check covers the tensorrt backend's engines; ONNX Runtime's TensorRT provider builds
    its own (and cannot turn TF32 off), so a passing record must not make its engines look checked."""
    checked = with_passed_tensorrt_check(export_dir, tmp_path / "checked")
    claim_gpu_providers(monkeypatch)
    stand_in_tensorrt(monkeypatch)
    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    options = OnnxOptions(tensorrt_cache_dir=tmp_path / "cache")
    with caplog.at_level("WARNING", logger="service.backends.onnx_backend"):
        onnx_backend.load_engine(checked, name="tiny", device="tensorrt:0", max_batch_size=2, options=options)
    assert "builds engines of its own" in caplog.text and "never compares with PyTorch" in caplog.text
    assert "NVIDIA_TF32_OVERRIDE=0" in caplog.text
    caplog.clear()
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")  # TF32 off in NVIDIA's libraries: only the first point stays
    with caplog.at_level("WARNING", logger="service.backends.onnx_backend"):
        onnx_backend.load_engine(checked, name="tiny", device="tensorrt:0", max_batch_size=2, options=options)
    assert "builds engines of its own" in caplog.text and "TF32" not in caplog.text


def test_both_onnxruntime_builds_installed_are_refused_on_a_gpu_and_reported_on_the_cpu(
    export_dir, monkeypatch, caplog
):
    """``make`` installs onnxruntime (the onnx extra); ``pip install -e '.[gpu]'`` then adds onnxruntime-gpu, and
    the two overwrite each other's module. The server says so, with the way out."""
    both = {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"}
    monkeypatch.setattr(onnx_backend, "installed_onnxruntime", lambda: both)
    with pytest.raises(BackendUnavailable, match="both ONNX Runtime builds are installed") as refused:
        onnx_backend.load_engine(export_dir, name="tiny", device="cuda:0", max_batch_size=2)
    assert "onnxruntime 1.32.0, onnxruntime-gpu 1.31.1" in str(refused.value)
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in str(refused.value)
    assert "pip install --extra-index-url https://pypi.nvidia.com -e '.[gpu]' for GPUs" in str(refused.value)
    with caplog.at_level("WARNING", logger="service.backends.onnx_backend"):
        engine = onnx_backend.load_engine(export_dir, name="tiny", device="cpu", max_batch_size=2)
    assert engine.providers == ["CPUExecutionProvider"] and "both ONNX Runtime builds are installed" in caplog.text


def test_installed_onnxruntime_builds_are_read_from_the_distributions():
    import importlib.metadata

    def version(name):
        if name == "onnxruntime-gpu":
            raise importlib.metadata.PackageNotFoundError(name)
        return "1.32.0"

    assert onnx_providers.installed_onnxruntime(version) == {"onnxruntime": "1.32.0"}
    assert onnx_providers.check_one_onnxruntime(ProviderChoice("cuda"), {"onnxruntime": "1.32.0"}) is None
    assert "onnxruntime" in onnx_providers.installed_onnxruntime()  # this environment: the onnx extra


def test_a_gpu_provider_that_did_not_load_names_an_onnxruntime_built_for_another_cuda(
    export_dir, monkeypatch, tmp_path
):
    """An onnxruntime-gpu built for CUDA 12 next to PyTorch's CUDA 13 libraries lists the GPU providers but
    cannot load them: the refusal says which CUDA each was built for."""
    claim_gpu_providers(monkeypatch, in_use=["CPUExecutionProvider"])
    monkeypatch.setattr(onnx_providers, "onnxruntime_cuda_version", lambda: "12.8")
    monkeypatch.setattr(onnx_providers, "torch_cuda", lambda: "13.0")
    with pytest.raises(BackendUnavailable, match="would run silently on the CPU") as refused:
        onnx_backend.load_engine(export_dir, name="tiny", device="cuda:0", max_batch_size=2)
    assert "onnxruntime-gpu is built for CUDA 12.8 while PyTorch here is built for CUDA 13.0" in str(refused.value)
    assert onnx_providers.cuda_build_note("13.0", "13.0") == "" and onnx_providers.cuda_build_note(None, "13.0") == ""


def test_on_a_gpu_provider_the_engine_is_warmed_up_at_every_batch_size(export_dir, monkeypatch):
    """ONNX Runtime's CUDA provider searches cuDNN's convolution algorithms at each new input shape: the server
    warms such an engine up at every batch size the micro-batcher can form, so no live frame pays the search."""
    cpu = onnx_backend.load_engine(export_dir, name="tiny", device="cpu", max_batch_size=3)
    assert not cpu.tunes_per_batch_size
    claim_gpu_providers(monkeypatch)
    cuda = onnx_backend.load_engine(export_dir, name="tiny", device="cuda:0", max_batch_size=3)
    assert cuda.tunes_per_batch_size
    for engine, sizes in ((cpu, [1, 3]), (cuda, [1, 2, 3])):
        runner = ModelRunner(engine, max_batch_size=3, max_delay_s=0.0)
        assert runner.warm_up_sizes() == sizes
        asyncio.run(runner.close())
