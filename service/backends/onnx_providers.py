"""Which ONNX Runtime execution provider ``--device`` asks for, whether ONNX Runtime really runs on it, and the
refusals that say what to install: the ``onnx`` backend's provider handling (:mod:`service.backends.onnx_backend`
creates the sessions).

ONNX Runtime falls back to the CPU with only a log line when a GPU provider does not load, so
:func:`verify_providers` checks the providers a session actually uses. The CPU build (``onnxruntime``) and the GPU
build (``onnxruntime-gpu``) own the same module (:func:`check_one_onnxruntime`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from plugins.extras import install_command
from service.engine import BackendUnavailable

GPU_INSTALL = "pip install --extra-index-url https://pypi.nvidia.com -e '.[gpu]'"
"""Installs the GPU build of ONNX Runtime and TensorRT (NVIDIA's index serves TensorRT's wheels)."""


GPU_GUIDE = 'the README\'s "TensorRT on a GPU machine"'


GPU_EXTRA = f"pip uninstall -y onnxruntime onnxruntime-gpu, then {GPU_INSTALL}; see {GPU_GUIDE}"
"""The GPU install steps every GPU refusal gives (the README's): both ONNX Runtime builds removed first, since the
GPU build must replace the CPU one ``make`` installs, never join it."""


#: The two distributions that install the ``onnxruntime`` module: the CPU build and the GPU (CUDA, TensorRT) build.
ONNXRUNTIME_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu")


ProviderKind = Literal["cpu", "cuda", "tensorrt"]


PROVIDER_NAMES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


@dataclass(frozen=True)
class ProviderChoice:
    """The execution provider ``--device`` asks for.

    Attributes:
        kind: ``cpu``, ``cuda`` or ``tensorrt``.
        device_id: GPU index (0 for the CPU).
    """

    kind: ProviderKind
    device_id: int = 0

    @property
    def provider(self) -> str:
        """ONNX Runtime's name of the provider."""
        return PROVIDER_NAMES[self.kind]

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"{self.kind}:{self.device_id}"


def parse_device(device: str) -> ProviderChoice:
    """``cpu`` (or ``cpu:0``, torch's spelling of the same), ``cuda[:N]`` or ``tensorrt[:N]`` -> the provider choice.

    Raises:
        ValueError: anything else (``cpu:1`` included: ONNX Runtime has one CPU device).
    """
    kind, _, index = device.strip().lower().partition(":")
    if kind not in PROVIDER_NAMES or (kind == "cpu" and index not in ("", "0")) or (index and not index.isdigit()):
        raise ValueError(
            f"--device {device!r} is not an ONNX Runtime device for the onnx backend: use cpu (or cpu:0), cuda[:N] "
            "or tensorrt[:N] (the TensorRT execution provider)"
        )
    return ProviderChoice(kind, int(index or 0))  # type: ignore[arg-type]


def provider_list(
    choice: ProviderChoice,
    graph_inputs: Mapping[str, tuple[int, ...]],
    max_batch_size: int,
    fp16: bool,
    cache_dir: Path,
) -> list[tuple[str, dict[str, str]]]:
    """The ``providers`` argument of an ONNX Runtime session for ``choice``, most preferred first.

    Args:
        choice: the requested provider.
        graph_inputs: the graph's input names and their shapes without the batch axis (for the TensorRT profile).
        max_batch_size: largest batch the TensorRT profile covers.
        fp16: let TensorRT use fp16 kernels. The CUDA provider never uses TF32 (on by default on Ampere and
            newer GPUs): ``--fp16`` concerns TensorRT engines only, and the graphs keep fp32 accuracy.
        cache_dir: where TensorRT keeps its engine and timing caches.
    """
    cpu: tuple[str, dict[str, str]] = ("CPUExecutionProvider", {})
    if choice.kind == "cpu":
        return [cpu]
    cuda = ("CUDAExecutionProvider", {"device_id": str(choice.device_id), "use_tf32": "0"})  # the graphs are fp32
    if choice.kind == "cuda":
        return [cuda, cpu]

    def shapes(batch: int) -> str:
        return ",".join(f"{name}:{'x'.join(map(str, (batch, *dims)))}" for name, dims in graph_inputs.items())

    tensorrt = {
        "device_id": str(choice.device_id),
        "trt_fp16_enable": str(fp16),
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache_dir),
        "trt_profile_min_shapes": shapes(1),
        "trt_profile_opt_shapes": shapes(max_batch_size),
        "trt_profile_max_shapes": shapes(max_batch_size),
    }
    return [("TensorrtExecutionProvider", tensorrt), cuda, cpu]


def verify_providers(
    choice: ProviderChoice, in_use: list[str], graph: str, note: str | None = None, tensorrt_version: str | None = None
) -> None:
    """Fail unless the session really runs on the requested provider (ONNX Runtime falls back silently).

    A TensorRT provider that did not load while CUDA's did (the GPU and CUDA work) is refused with
    :func:`tensorrt_not_loaded`: TensorRT's libraries were not found or did not load, which reinstalling the same
    packages does not change.

    Args:
        choice: the requested provider.
        in_use: the session's providers, most preferred first.
        graph: the graph's file name, for the message.
        note: appended to the refusal; ``None``: :func:`cuda_build_note` of the installed builds, looked up only
            when refusing.
        tensorrt_version: the version of the TensorRT imported before the session was made (``tensorrt``
            only), for the message.

    Raises:
        BackendUnavailable: the requested provider is not the session's first provider.
    """
    if in_use and in_use[0] == choice.provider:
        return
    if choice.kind == "tensorrt" and PROVIDER_NAMES["cuda"] in in_use:
        raise BackendUnavailable(tensorrt_not_loaded(choice, in_use, graph, tensorrt_version))
    if note is None:
        note = cuda_build_note(onnxruntime_cuda_version(), torch_cuda())
    libraries = "CUDA and cuDNN" + (" and TensorRT" if choice.kind == "tensorrt" else "")
    raise BackendUnavailable(
        f"--device {choice}: ONNX Runtime did not load {choice.provider} for {graph} (providers in use: "
        f"{', '.join(in_use) or 'none'}), so it would run silently on the CPU. Check that an NVIDIA GPU is visible "
        f"and that the {libraries} libraries onnxruntime-gpu needs are installed ({GPU_EXTRA}), or use --device cpu"
        + (f". {note}" if note else "")
    )


def tensorrt_not_loaded(choice: ProviderChoice, in_use: list[str], graph: str, tensorrt_version: str | None) -> str:
    """The refusal for ONNX Runtime's TensorRT provider not loading while its CUDA provider did.

    The provider's library (``libonnxruntime_providers_tensorrt.so``) links ``libnvinfer`` and ``libnvonnxparser``
    of the TensorRT major version onnxruntime-gpu was built for; the pip ``tensorrt`` package puts them into the
    process when imported, which the backend does first. What is left is a library of another major version, or
    one missing: ONNX Runtime's error, logged above the refusal, names it.
    """
    imported = (
        f"TensorRT {tensorrt_version} is installed and was imported, so its libraries are not the ones this "
        "onnxruntime-gpu needs (another major version) or are incomplete"
        if tensorrt_version
        else "TensorRT was not imported first (the pip tensorrt package loads its libraries when imported)"
    )
    return (
        f"--device {choice}: ONNX Runtime did not load {choice.provider} for {graph} (providers in use: "
        f"{', '.join(in_use)}): CUDA works, but the TensorRT libraries its TensorRT provider needs (libnvinfer.so "
        "and libnvonnxparser.so of the TensorRT major version onnxruntime-gpu was built for) were not found or did "
        f"not load; ONNX Runtime's error above names the library. {imported}: install the tensorrt release ONNX "
        f"Runtime's TensorRT provider documentation lists for this onnxruntime-gpu (see {GPU_GUIDE}), or use "
        "--device cuda (ONNX Runtime without TensorRT) or --backend tensorrt"
    )


def installed_onnxruntime(version: Callable[[str], str] = importlib.metadata.version) -> dict[str, str]:
    """The ONNX Runtime distributions installed here (:data:`ONNXRUNTIME_DISTRIBUTIONS`), name -> version.

    Args:
        version: looks a distribution's version up (``importlib.metadata.version``, or a stand-in in tests);
            raises ``importlib.metadata.PackageNotFoundError`` for one that is not installed.
    """
    found = {}
    for name in ONNXRUNTIME_DISTRIBUTIONS:
        try:
            found[name] = version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def check_one_onnxruntime(choice: ProviderChoice, installed: Mapping[str, str]) -> str | None:
    """Refuse, or warn about, the CPU and GPU builds of ONNX Runtime installed side by side.

    Both install the ``onnxruntime`` module, so with both installed its files are whichever build wrote them last
    (a GPU provider may be missing, or half there), and uninstalling one of the two removes files the other
    needs. ``make`` installs the CPU build (the ``onnx`` extra); installing the ``gpu`` extra on top of it adds
    the GPU build next to it (the README's steps remove both first).

    Args:
        choice: the requested provider.
        installed: :func:`installed_onnxruntime`.

    Returns:
        The warning to log on the CPU (which both builds provide), else ``None``.

    Raises:
        BackendUnavailable: both are installed and ``choice`` is a GPU provider.
    """
    if not all(name in installed for name in ONNXRUNTIME_DISTRIBUTIONS):
        return None
    versions = ", ".join(f"{name} {installed[name]}" for name in ONNXRUNTIME_DISTRIBUTIONS)
    message = (
        f"both ONNX Runtime builds are installed ({versions}): they install the same onnxruntime module, so which "
        "one runs is whichever was installed last, possibly in part. Remove both (pip uninstall -y onnxruntime "
        f"onnxruntime-gpu; removing only one deletes files the other needs), then install one: {GPU_INSTALL} for "
        f"GPUs (see {GPU_GUIDE}), or {install_command('onnx')} for the CPU"
    )
    if choice.kind == "cpu":
        return message
    raise BackendUnavailable(f"--device {choice}: {message}")


def cuda_build_note(ort_cuda: str | None, torch_cuda: str | None) -> str:
    """A hint for a GPU provider that did not load: onnxruntime-gpu built for another CUDA major version than
    the CUDA libraries here (those of PyTorch's CUDA build, ``torch.version.cuda``). Empty when the versions
    are unknown or agree.

    Args:
        ort_cuda: the CUDA version onnxruntime-gpu was built with (its ``capi.build_and_package_info``).
        torch_cuda: PyTorch's.
    """
    if not ort_cuda or not torch_cuda or ort_cuda.split(".")[0] == torch_cuda.split(".")[0]:
        return ""
    return (
        f"This onnxruntime-gpu is built for CUDA {ort_cuda} while PyTorch here is built for CUDA {torch_cuda}: "
        f"install an onnxruntime-gpu built for CUDA {torch_cuda.split('.')[0]} (see {GPU_GUIDE}, its CUDA "
        "versions paragraph)"
    )


def onnxruntime_cuda_version() -> str | None:
    """The CUDA version the installed onnxruntime-gpu was built with, ``None`` when unknown (the CPU build
    records none)."""
    try:
        info = importlib.import_module("onnxruntime.capi.build_and_package_info")
    except ImportError:
        return None
    version = getattr(info, "cuda_version", None)
    return str(version) if version else None


def torch_cuda() -> str | None:
    """The CUDA version of PyTorch's build (``None`` for a CPU build)."""
    import torch

    return torch.version.cuda


def import_onnxruntime() -> Any:
    """``import onnxruntime``, or a :class:`BackendUnavailable` naming the package to install."""
    try:
        import onnxruntime
    except ImportError as error:
        raise BackendUnavailable(
            f"the onnx backend needs ONNX Runtime: {install_command('onnx')} (CPU), or for GPUs {GPU_EXTRA}"
        ) from error
    return onnxruntime
