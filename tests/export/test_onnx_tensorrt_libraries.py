"""``--backend onnx --device tensorrt[:N]`` imports TensorRT before it makes its sessions: ONNX Runtime's TensorRT
provider links ``libnvinfer`` and ``libnvonnxparser``, which the pip ``tensorrt`` package puts into the process only
when imported. Without TensorRT the backend refuses with the ``gpu`` extra; when the provider still does not load
while CUDA's does, the refusal says that TensorRT's libraries were not found or did not load, not to reinstall.

No GPU here: ONNX Runtime's CPU build is made to claim the GPU providers, and ``import tensorrt`` is answered by a
stand-in that records when it was imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import quick_export, save_tiny_model
from test_onnx_backend import claim_gpu_providers

from service.backends import onnx_backend
from service.engine import BackendUnavailable, load_engine

ort = pytest.importorskip("onnxruntime", reason="needs ONNX Runtime: pip install -e '.[onnx]'")

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
STEPS = (
    "pip uninstall -y onnxruntime onnxruntime-gpu, then pip install --extra-index-url https://pypi.nvidia.com "
    "-e '.[gpu]'"
)


class TensorRTStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``import tensorrt`` with a module of TensorRT ``10.15.1``, counting the imports."""

    def __init__(self) -> None:
        self.imports = 0

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name == "tensorrt" else None

    def create_module(self, spec):
        return None

    def exec_module(self, module: ModuleType) -> None:
        self.imports += 1
        module.__version__ = "10.15.1"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quick_export(save_tiny_model(tmp_path_factory.mktemp("source")), tmp_path_factory.mktemp("export"))


@pytest.fixture
def tensorrt(monkeypatch) -> TensorRTStandIn:
    stand_in = TensorRTStandIn()
    # Set, then delete: undoing both removes the stand-in's module again (or restores a real TensorRT's).
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.delitem(sys.modules, "tensorrt")
    monkeypatch.setattr(sys, "meta_path", [stand_in, *sys.meta_path])
    return stand_in


def claim_gpu_providers_counting(
    monkeypatch, in_use: list[str] | None, imports_seen: list[int], tensorrt: TensorRTStandIn
) -> None:
    """Make the CPU build claim the GPU providers (:func:`test_onnx_backend.claim_gpu_providers`); each session
    records how often TensorRT was imported before it was made and reports ``in_use`` (default: the provider asked
    for first)."""
    claim_gpu_providers(monkeypatch, in_use, on_session=lambda: imports_seen.append(tensorrt.imports))


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed")
def test_without_tensorrt_the_tensorrt_provider_is_refused_naming_the_gpu_extra(export_dir):
    """The CPU build lacks the TensorRT provider too, but what is missing first is TensorRT: the refusal says so."""
    with pytest.raises(BackendUnavailable, match="the tensorrt package is not installed") as refused:
        load_engine("onnx", export_dir, name="tiny", device="tensorrt:0", max_batch_size=2)
    message = str(refused.value)
    assert (
        message.startswith("--backend onnx --device tensorrt:0 needs an NVIDIA GPU and TensorRT") and STEPS in message
    )


def test_tensorrt_is_imported_before_the_sessions_are_made(export_dir, monkeypatch, tmp_path, tensorrt):
    imports_seen: list[int] = []
    claim_gpu_providers_counting(monkeypatch, None, imports_seen, tensorrt)
    options = onnx_backend.OnnxOptions(tensorrt_cache_dir=tmp_path / "cache")
    engine = onnx_backend.load_engine(export_dir, name="tiny", device="tensorrt:0", max_batch_size=2, options=options)
    assert engine.providers[0] == "TensorrtExecutionProvider"
    assert imports_seen == [1, 1], "both sessions are made after import tensorrt"


def test_cuda_providers_never_import_tensorrt(export_dir, monkeypatch, tensorrt):
    imports_seen: list[int] = []
    claim_gpu_providers_counting(monkeypatch, None, imports_seen, tensorrt)
    onnx_backend.load_engine(export_dir, name="tiny", device="cuda:0", max_batch_size=2)
    assert imports_seen == [0, 0]


def test_a_tensorrt_provider_that_does_not_load_where_cuda_does_names_tensorrts_libraries(
    export_dir, monkeypatch, tmp_path, tensorrt
):
    claim_gpu_providers_counting(monkeypatch, ["CUDAExecutionProvider", "CPUExecutionProvider"], [], tensorrt)
    options = onnx_backend.OnnxOptions(tensorrt_cache_dir=tmp_path / "cache")
    with pytest.raises(BackendUnavailable, match="TensorRT libraries") as refused:
        onnx_backend.load_engine(export_dir, name="tiny", device="tensorrt:0", max_batch_size=2, options=options)
    message = str(refused.value)
    assert "libnvinfer.so and libnvonnxparser.so" in message and "were not found or did not load" in message
    assert "TensorRT 10.15.1 is installed and was imported" in message and "--device cuda" in message
    assert "pip uninstall" not in message, "reinstalling the same packages does not help"
