"""deploy/Dockerfile and deploy/Dockerfile.gpu, checked without a Docker engine.

Verified here:
- structure: multi-stage, every base image pinned by an exact version tag or a digest, a numeric non-root USER,
  ``python -m service`` as the exec-form ENTRYPOINT, and no compiler, ``-dev`` package or pip in the final stage;
  both images install the extras they run (``server``; ``train`` for the training jobs of deploy/k8s/training;
  ``export``), the GPU image on a CUDA *runtime* base with the ``gpu`` extra, the CPU image with the ``onnx`` extra,
  the torch/torchvision versions pyproject.toml's ``server`` extra pins and everything else at the exact versions
  of deploy/constraints.txt, which covers the runtime closure of what it installs, as installed here, within
  pyproject.toml's bounds;
- the HEALTHCHECK (for Docker; Kubernetes runs its probes): run here against the real metrics endpoint, and its
  start period covers the startup probe's allowance of the render that runs the image;
- the build context: every path the Dockerfiles COPY exists in the repository and survives .dockerignore (which
  keeps virtual environments, runs and VCS data out, and lets in only the constraints file of deploy/); the
  default model in service/models/default is checked
  only if it exists (it is committed separately), but it is never excluded;
- the install line: ``pip install --dry-run --no-deps`` on a copy of exactly what the build stage copies proves
  that the project metadata builds from the image's files (without downloading anything);
- the entrypoint: ``python -m service --help`` runs from a directory laid out as the image's /app (source on
  PYTHONPATH) with the image's environment, and with that environment the configuration validates and the
  server's own checks run (a missing model directory is reported with exit status 2).

Not verified (needs a Docker engine, network and, for the GPU image, an NVIDIA GPU): that the images build, that
the base tags still exist upstream, that the pinned wheels (and the GPU image's unpinned ones) resolve for the
base's Python, that the CUDA/cuDNN
libraries match onnxruntime-gpu and TensorRT at run time, and the image sizes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import (
    DOCKERFILES,
    REPO,
    Instruction,
    Renderer,
    copy_sources,
    dockerignore_patterns,
    dockerignored,
    env_assignments,
    parse_dockerfile,
    port_of,
    render_targets,
    stages,
)
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from service.config import ServiceConfig
from service.config_sources import ENV_PREFIX
from service.metrics import Metrics

IDS = [p.name for p in DOCKERFILES]
DOCKERIGNORE = REPO / ".dockerignore"
DEFAULT_MODEL = REPO / "service" / "models" / "default"
CONSTRAINTS = REPO / "deploy" / "constraints.txt"
PINNED = re.compile(r"^[\w./-]+(:[\w.-]*\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")
REMOVAL = re.compile(r"\brm -rf [^&;]*")
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|cc|make|cmake|ninja|build-essential|[\w.+]+-dev|pip|pip3)\b")


def _instructions(path: Path) -> list[Instruction]:
    return parse_dockerfile(path)


def _ignore_patterns(dockerfile: Path) -> list[str]:
    """The ignore patterns applied to ``dockerfile``'s context: the context's .dockerignore, as every builder reads
    it (no Dockerfile has its own ``<Dockerfile>.dockerignore``, which the legacy builder would ignore)."""
    assert not dockerfile.with_name(dockerfile.name + ".dockerignore").exists(), (
        "keep one ignore file for every builder"
    )
    return dockerignore_patterns(DOCKERIGNORE)


def _final(path: Path) -> list[Instruction]:
    return stages(_instructions(path))[-1]


def _image_env(path: Path) -> dict[str, str]:
    return env_assignments(_final(path))


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _project_install(path: Path) -> tuple[Instruction, set[str]]:
    """The build stage's ``pip install ".[extras]"`` of the project, and its extras."""
    found = [
        (i, set(m.group(1).split(",")))
        for i in stages(_instructions(path))[0]
        if i.keyword == "RUN" and (m := re.search(r'pip install [^&]*"\.\[([\w,-]+)\]"', i.arguments))
    ]
    assert len(found) == 1, f"{path.name}: one pip install of the project with its extras, found {len(found)}"
    return found[0]


def _requirements(extras: set[str]) -> list[str]:
    """pyproject.toml's requirements of ``slotstream[extras]``: the core ones, then each extra's, following an
    extra's references to others (``slotstream[server]``)."""
    project = _pyproject()["project"]
    texts = list(project["dependencies"])
    pending, seen = sorted(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in project["optional-dependencies"][extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == canonicalize_name(project["name"]):
                pending.extend(requirement.extras)
            else:
                texts.append(text)
    return texts


def _pinned(name: str) -> str:
    """The version pyproject.toml pins ``name`` to (``==``), in whichever extra."""
    (version,) = {
        match.group(1)
        for text in _requirements(set(_pyproject()["project"]["optional-dependencies"]))
        if (match := re.fullmatch(rf"{re.escape(name)}==([\w.+]+)", text))
    }
    return version


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_structure(path: Path) -> None:
    instructions = _instructions(path)
    built = stages(instructions)
    assert len(built) >= 2, "multi-stage: build in one stage, copy the result into a clean one"
    for stage in built:
        words = stage[0].arguments.split()
        image = words[0]
        assert image.count(":") or "@sha256:" in image, f"{path.name}: {image} has no tag"
        assert PINNED.match(image) and ("@sha256:" in image or re.search(r":\S*\d+\.\d+\.\d+", image)), (
            f"{path.name} line {stage[0].line}: pin {image} by an exact version tag (x.y.z) or a digest"
        )
    final = built[-1]
    checks = [i for i in instructions if i.keyword == "HEALTHCHECK"]
    assert [i for i in final if i.keyword == "HEALTHCHECK"] == checks and len(checks) == 1, "one, in the final stage"
    users = [i.arguments for i in final if i.keyword == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), "numeric non-root USER (runAsNonRoot can verify)"
    entrypoints = [i.arguments for i in final if i.keyword == "ENTRYPOINT"]
    assert entrypoints and entrypoints[-1] == '["python", "-m", "service"]', "exec-form python -m service"
    for instruction in final:
        if instruction.keyword == "RUN":
            kept = REMOVAL.sub("", instruction.arguments)  # removing a tool is what the final stage should do
            tools = BUILD_TOOLS.findall(kept)
            assert not tools, f"{path.name} line {instruction.line}: build tools {tools} in the final stage"
    if final[0].arguments.split()[0].startswith("python:"):
        removals = " ".join(REMOVAL.findall(" && ".join(i.arguments for i in final if i.keyword == "RUN")))
        assert "/usr/local/bin/pip" in removals, f"{path.name}: remove the python base image's own pip"
    exposed = {int(p.split("/")[0]) for i in final if i.keyword == "EXPOSE" for p in i.arguments.split()}
    defaults = ServiceConfig()
    assert exposed == {port_of(defaults.listen), port_of(defaults.metrics_listen)}


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_image_environment_is_valid_service_config(path: Path) -> None:
    env = _image_env(path)
    settings = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    config = ServiceConfig.from_sources([], environ=settings)
    known = {ENV_PREFIX + name.upper() for name in ServiceConfig.__dataclass_fields__}
    assert settings.keys() <= known, f"unknown settings {sorted(settings.keys() - known)}"
    defaults = ServiceConfig()
    assert config.listen == f"0.0.0.0:{port_of(defaults.listen)}", "listen on every interface, default port"
    assert config.metrics_listen == f"0.0.0.0:{port_of(defaults.metrics_listen)}"


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_copied_paths_exist_and_reach_the_build(path: Path) -> None:
    patterns = _ignore_patterns(path)
    sources = [s for i in _instructions(path) if i.keyword in ("COPY", "ADD") for s in copy_sources(i)]
    assert sources, "the image copies the project"
    for source in sources:
        assert (REPO / source).exists(), f"{path.name} copies {source}, which is not in the repository"
        assert not dockerignored(patterns, source), f".dockerignore excludes {source}, which {path.name} copies"
    assert {"service/", "plugins/", "training/"} <= set(sources), "copy whole packages (the model is in service/)"


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = dockerignore_patterns(DOCKERIGNORE)
    for excluded in (
        ".git",
        ".venv/bin/python",
        "runs/x/ckpt",
        "tests/conftest.py",
        "service/__pycache__/x.pyc",
        "deploy/Dockerfile",
        "deploy/k8s/base/deployment.yaml",
    ):
        assert dockerignored(patterns, excluded), f"{excluded} would be sent to the builder"
    for kept in (
        "pyproject.toml",
        "service/server.py",
        "service/_pb/perception_pb2.py",
        "training/run.py",
        "deploy/constraints.txt",
    ):
        assert not dockerignored(patterns, kept), f"{kept} would be missing from the image"
    # The default model must reach the image.
    for name in ("config.json", "model.safetensors"):
        assert not dockerignored(patterns, f"service/models/default/{name}")


def _pins() -> dict[str, tuple[str, str]]:
    """deploy/constraints.txt as ``{canonical name: (name, version)}``."""
    pins: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(CONSTRAINTS.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        pinned = re.fullmatch(r"([A-Za-z0-9][\w.-]*)==([\w.+!-]+)", line.strip())
        assert pinned, f"constraints.txt line {number}: {line!r} is not name==version"
        key = canonicalize_name(pinned.group(1))
        assert key not in pins, f"constraints.txt pins {pinned.group(1)} twice"
        pins[key] = (pinned.group(1), pinned.group(2))
    return pins


def test_cpu_image_installs_at_the_constrained_versions() -> None:
    """The CPU image installs the project with the extras it runs, and every dependency at the exact version of
    deploy/constraints.txt, whose pins cover the whole runtime closure of those extras and keep within
    pyproject.toml's bounds."""
    build = stages(_instructions(REPO / "deploy" / "Dockerfile"))[0]
    copied = {shlex.split(i.arguments)[-1]: copy_sources(i) for i in build if i.keyword == "COPY" and copy_sources(i)}
    (target,) = [dest for dest, sources in copied.items() if sources == ["deploy/constraints.txt"]]
    install, extras = _project_install(REPO / "deploy" / "Dockerfile")
    # Serving, the CPU training jobs (deploy/k8s/training/cpu-smoke runs this image), `--backend onnx` on the CPU.
    assert {"server", "train", "onnx"} <= extras, f"deploy/Dockerfile line {install.line}: extras {sorted(extras)}"
    assert re.search(rf"pip install (--constraint|-c) {re.escape(target)} ", install.arguments), (
        f"deploy/Dockerfile line {install.line}: install with --constraint {target}"
    )

    freeze = importlib.util.spec_from_file_location("freeze_constraints", REPO / "deploy" / "freeze_constraints.py")
    assert freeze is not None and freeze.loader is not None
    module = importlib.util.module_from_spec(freeze)
    freeze.loader.exec_module(module)
    assert set(module.EXTRAS) == extras, "freeze_constraints.py pins the closure of what the image installs"
    pins = _pins()
    missing = sorted(set(module.runtime_closure()) - pins.keys())
    assert not missing, f"{missing} come with the image's extras but are not pinned: run deploy/freeze_constraints.py"

    for text in _requirements(extras):
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name, version = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"constraints.txt pins {name}=={version}, outside pyproject.toml's {text!r}"
        )


def _healthcheck(path: Path) -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's ``--option=value`` flags and its exec-form command."""
    (check,) = [i for i in _final(path) if i.keyword == "HEALTHCHECK"]
    options, _, command = check.arguments.partition(" CMD ")
    flags = dict(flag.removeprefix("--").split("=", 1) for flag in options.split())
    argv = json.loads(command)
    assert isinstance(argv, list), f"{path.name}: exec-form HEALTHCHECK CMD [...] (no shell needed)"
    return flags, argv


def _seconds(duration: str) -> float:
    found = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    assert found, f"unsupported duration {duration!r}"
    return int(found.group(1)) * {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}[found.group(2)]


@pytest.mark.parametrize(
    ("path", "target"), [(DOCKERFILES[0], "base"), (DOCKERFILES[1], "base+components/gpu")], ids=IDS
)
def test_healthcheck_waits_out_the_start_up_the_manifests_allow(render: Renderer, path: Path, target: str) -> None:
    """Docker counts failures only after the start period: it covers the model load and warm-up (TensorRT engine
    builds on the GPU image) that the image's Kubernetes startup probe allows."""
    flags, _ = _healthcheck(path)
    (scenario,) = [t for t in render_targets() if t.id == target]
    (deployment,) = [d for d in render(scenario) if d["kind"] == "Deployment"]
    startup = deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert _seconds(flags["start-period"]) >= startup["periodSeconds"] * startup["failureThreshold"], flags
    assert _seconds(flags["timeout"]) >= 4, "the check itself waits up to 3 s for the metrics page"


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_healthcheck_reads_the_ready_gauge_and_the_heartbeat(path: Path) -> None:
    """The image's health command, run here against ``service.metrics.Metrics`` served on a free port, with the
    image's environment pointed at that port."""
    _, argv = _healthcheck(path)
    assert argv[0] == "python", "the venv's python (PATH), which the image runs the server with"
    listen = _image_env(path)["SLOTSTREAM_METRICS_LISTEN"]
    metrics = Metrics()
    try:
        port = metrics.serve_http("127.0.0.1:0")
        env = {"PATH": os.environ["PATH"], "SLOTSTREAM_METRICS_LISTEN": listen.rpartition(":")[0] + f":{port}"}

        def check() -> int:
            return subprocess.run(
                [sys.executable, "-I", *argv[1:]], env=env, capture_output=True, timeout=30
            ).returncode

        metrics.loop_heartbeat.set(time.time())  # fresh before each check: a check may take seconds on a busy machine
        assert check() != 0, "unhealthy while not ready (loading, warming up, failing, draining)"
        metrics.ready.set(1)
        metrics.loop_heartbeat.set(time.time())
        assert check() == 0, "healthy once ready"
        metrics.loop_heartbeat.set(time.time() - 15)
        assert check() != 0, "unhealthy while the event loop is blocked"
    finally:
        metrics.close()
    env["SLOTSTREAM_METRICS_LISTEN"] = "0.0.0.0:9"  # the discard port: refused
    refused = subprocess.run([sys.executable, "-I", *argv[1:]], env=env, capture_output=True, timeout=30)
    assert refused.returncode != 0, "unhealthy when nothing serves the metrics"


def test_the_default_model_the_image_embeds_is_complete() -> None:
    ServiceConfig(model_dir=DEFAULT_MODEL).check_files()


def test_cpu_image_pins_torch_as_pyproject_does() -> None:
    pins = {}
    for requirement in _requirements({"server"}):
        if pinned := re.fullmatch(r"(torch|torchvision)==([\w.+]+)", requirement):
            pins[pinned.group(1)] = pinned.group(2)
    assert pins.keys() == {"torch", "torchvision"}
    runs = " ".join(i.arguments for i in _instructions(REPO / "deploy" / "Dockerfile") if i.keyword == "RUN")
    assert "download.pytorch.org/whl/cpu" in runs, "the CPU build of torch"
    for name, version in pins.items():
        assert f"{name}=={version}" in runs, f"deploy/Dockerfile must install {name}=={version} (pyproject.toml)"


def test_gpu_image_installs_the_gpu_extra_on_cuda_runtime() -> None:
    path = REPO / "deploy" / "Dockerfile.gpu"
    for stage in stages(_instructions(path)):
        assert re.match(r"nvidia/cuda:\d+\.\d+\.\d+-(cudnn-)?runtime-", stage[0].arguments), "a CUDA runtime base"
    install, extras = _project_install(path)
    # The gpu extra, serving, the training jobs of deploy/k8s/training (which run this image) and the export the
    # build itself runs (python -m training.export).
    assert {"gpu", "server", "train", "export"} <= extras, f"Dockerfile.gpu line {install.line}: {sorted(extras)}"
    assert "onnx" not in extras, "the CPU build of ONNX Runtime owns the same module as the GPU build"
    assert set(_pyproject()["project"]["optional-dependencies"]["gpu"]), "the gpu extra exists"


def test_gpu_base_matches_the_cuda_build_of_torch() -> None:
    """The dev environment's torch is the same PyPI wheel the GPU image installs; its CUDA major must match."""
    import torch

    pinned = _pinned("torch")
    if torch.version.cuda is None or torch.__version__.split("+")[0] != pinned:
        pytest.skip(f"this environment's torch ({torch.__version__}) is not the pinned PyPI CUDA build")
    base = stages(_instructions(REPO / "deploy" / "Dockerfile.gpu"))[-1][0].arguments
    found = re.search(r"nvidia/cuda:(\d+)\.", base)
    assert found and found.group(1) == torch.version.cuda.split(".")[0], (
        f"torch is built for CUDA {torch.version.cuda}"
    )


def _build_context_copy(destination: Path) -> None:
    """What the CPU build stage has in /app: the COPY sources, filtered by its ignore file."""
    patterns = _ignore_patterns(REPO / "deploy" / "Dockerfile")
    build = stages(_instructions(REPO / "deploy" / "Dockerfile"))[0]
    for source in (s.rstrip("/") for i in build if i.keyword == "COPY" for s in copy_sources(i)):
        origin = REPO / source
        files = [origin] if origin.is_file() else [p for p in origin.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            if not dockerignored(patterns, relative):
                (destination / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, destination / relative)


def test_install_line_metadata_builds_from_the_image_files(tmp_path: Path) -> None:
    pytest.importorskip("setuptools", reason="--no-build-isolation needs setuptools in this environment")
    _build_context_copy(tmp_path)
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-build-isolation", "--quiet"]
    result = subprocess.run(
        [*command, "--no-index", "--report", "-", "."], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"`pip install .` fails on the image's files:\n{result.stderr}"
    installed = [item["metadata"]["name"] for item in json.loads(result.stdout)["install"]]
    assert installed == ["slotstream"]


def test_entrypoint_help_runs_in_the_image_layout(tmp_path: Path) -> None:
    """``python -m service --help`` from outside the source tree, the source on PYTHONPATH as in /app."""
    instructions = _final(REPO / "deploy" / "Dockerfile")
    argv = json.loads(next(i.arguments for i in instructions if i.keyword == "ENTRYPOINT"))
    assert argv[0] == "python", "the image's python is the venv's; here it is this interpreter"
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update({k: v for k, v in _image_env(REPO / "deploy" / "Dockerfile").items() if k.startswith(ENV_PREFIX)})
    env.update({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    result = subprocess.run(
        [sys.executable, *argv[1:], "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "--listen" in result.stdout and "SLOTSTREAM_" in result.stdout


def test_entrypoint_validates_the_image_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the image's environment, ``main`` accepts the settings and reaches its file checks."""
    from service.__main__ import main

    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    for key, value in _image_env(REPO / "deploy" / "Dockerfile").items():
        if key.startswith(ENV_PREFIX):
            monkeypatch.setenv(key, value)
    assert main(["--model-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "not a model directory" in error and "invalid" not in error
