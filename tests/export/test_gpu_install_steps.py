"""Every refusal for a missing GPU package gives the README's GPU install steps ("TensorRT on a GPU machine"):
remove both ONNX Runtime builds, then install the ``gpu`` extra with NVIDIA's index. A bare
``pip install -e '.[gpu]'`` in a ``make`` venv installs the GPU build next to the CPU one, which the backend then
refuses, and misses TensorRT's wheels."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import quick_export, save_tiny_model

from service.backends import onnx_providers, tensorrt_backend
from service.backends.onnx_providers import ProviderChoice
from service.engine import BackendUnavailable, load_engine

pytest.importorskip("onnxruntime", reason="needs ONNX Runtime: pip install -e '.[onnx]'")

REPO = Path(__file__).resolve().parents[2]
UNINSTALL = "pip uninstall -y onnxruntime onnxruntime-gpu"
INSTALL = "pip install --extra-index-url https://pypi.nvidia.com -e '.[gpu]'"
STEPS = f"{UNINSTALL}, then {INSTALL}"
HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def readme_gpu_section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("### TensorRT on a GPU machine")
    return text[start : re.compile(r"^#{2,3} ", re.M).search(text, start + 1).start()]


def test_the_steps_are_the_readmes():
    commands = [line.split("#")[0].strip() for line in readme_gpu_section().splitlines()]
    assert UNINSTALL in commands and INSTALL in commands
    assert onnx_providers.GPU_EXTRA.startswith(STEPS) and '"TensorRT on a GPU machine"' in onnx_providers.GPU_EXTRA


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quick_export(save_tiny_model(tmp_path_factory.mktemp("source")), tmp_path_factory.mktemp("export"))


def bare_extra(message: str) -> bool:
    """Whether ``message`` gives the bare ``pip install -e '.[gpu]'`` (without the index and the removal)."""
    return re.search(r"pip install -e '\.\[gpu\]'", message) is not None


def test_a_missing_provider_gives_the_steps(export_dir):
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider") as refused:
        load_engine("onnx", export_dir, name="tiny", device="cuda:0", max_batch_size=2)
    assert STEPS in str(refused.value) and not bare_extra(str(refused.value))


def test_a_provider_that_did_not_load_gives_the_steps():
    with pytest.raises(BackendUnavailable, match="would run silently on the CPU") as refused:
        onnx_providers.verify_providers(ProviderChoice("tensorrt"), ["CPUExecutionProvider"], "step.onnx", note="")
    assert STEPS in str(refused.value) and not bare_extra(str(refused.value))


def test_both_builds_installed_names_the_readmes_install_command():
    both = {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"}
    with pytest.raises(BackendUnavailable, match="both ONNX Runtime builds") as refused:
        onnx_providers.check_one_onnxruntime(ProviderChoice("cuda"), both)
    message = str(refused.value)
    assert UNINSTALL in message and f"{INSTALL} for GPUs" in message and not bare_extra(message)


def test_onnxruntime_missing_gives_the_steps(monkeypatch):
    from training.export import parity

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    with pytest.raises(BackendUnavailable) as refused:
        onnx_providers.import_onnxruntime()
    with pytest.raises(ImportError) as export_refused:
        parity.import_onnxruntime()
    for message in (str(refused.value), str(export_refused.value)):
        assert "pip install 'slotstream[onnx]'" in message and STEPS in message and not bare_extra(message)


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed")
def test_tensorrt_missing_gives_the_steps_in_the_backend_and_the_export(export_dir, tmp_path, capsys):
    with pytest.raises(BackendUnavailable, match="tensorrt package is not installed") as refused:
        tensorrt_backend.import_tensorrt()
    assert STEPS in str(refused.value) and not bare_extra(str(refused.value))
    from training.export.__main__ import main as export_main

    assert export_main(["--model", str(export_dir), "--out", str(tmp_path / "out"), "--tensorrt"]) == 1
    error = capsys.readouterr().err
    assert STEPS in error and not bare_extra(error)
