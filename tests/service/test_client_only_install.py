"""A client-only install (``pip install slotstream``, no extra): what it holds, what runs on it, and the refusal of
every command that needs an extra.

The client-only environment is simulated in a child process: every top-level module that no core requirement (or
its own requirements) provides is made unimportable, as if that distribution were not installed. The core
requirements are read from the installed metadata (``make`` reinstalls it whenever pyproject.toml changes; a test
below checks it is current).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from deploy_scripts import load_freeze_constraints
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from service_helpers import ServerThread

from plugins.extras import EXTRA_MODULES, missing_module

REPO = Path(__file__).resolve().parents[2]
PROJECT = "slotstream"
#: Never core requirements: the model stack, training and export (several GB with torch's CUDA build).
HEAVY = {"torch", "torchvision", "timm", "scipy", "tensorboard", "decord", "onnx", "onnxscript", "onnxruntime"}

#: Run first in the child: make every module outside the distributions named in argv[1] (JSON) unimportable.
BLOCK_OTHER_DISTRIBUTIONS = """\
import importlib.abc, importlib.metadata, json, re, sys

_allowed = set(json.loads(sys.argv.pop(1)))
_blocked = {
    module
    for module, owners in importlib.metadata.packages_distributions().items()
    if module not in sys.stdlib_module_names
    and not any(re.sub(r"[-_.]+", "-", owner).lower() in _allowed for owner in owners)
}


class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not a core requirement)", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
_before = set(sys.modules)
"""

#: Run last in the child: print the top-level names of the modules imported since the blocker was installed.
PRINT_IMPORTED = """
print(json.dumps(sorted({name.partition(".")[0] for name in set(sys.modules) - _before})))
"""


@pytest.fixture(scope="module")
def freeze() -> ModuleType:
    return load_freeze_constraints()


def _core_requirements() -> list[Requirement]:
    """The installed project's requirements that no extra conditions."""
    requirements = [Requirement(text) for text in importlib.metadata.requires(PROJECT) or []]
    return [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]


@pytest.fixture(scope="module")
def core_closure(freeze: ModuleType) -> list[str]:
    """Canonical names of the distributions a client-only install holds: the project, its core requirements, theirs."""
    return sorted({canonicalize_name(PROJECT), *freeze.runtime_closure(PROJECT, ())})


def _client_only(code: str, closure: list[str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child process where only the distributions of ``closure`` can be imported."""
    script = BLOCK_OTHER_DISTRIBUTIONS + code + PRINT_IMPORTED
    return subprocess.run(
        [sys.executable, "-c", script, json.dumps(closure), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _foreign(imported: list[str], closure: list[str]) -> dict[str, list[str]]:
    """The imported top-level modules that come from a distribution outside ``closure``, with their distributions."""
    owners = importlib.metadata.packages_distributions()
    allowed = set(closure)
    return {
        name: owners[name]
        for name in imported
        if name not in sys.stdlib_module_names
        and name in owners
        and not any(canonicalize_name(owner) in allowed for owner in owners[name])
    }


def test_installed_metadata_is_the_pyproject() -> None:
    """The installed core requirements are pyproject.toml's (the tests below read the metadata)."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(map(str, map(Requirement, declared))) == sorted(map(str, _core_requirements())), (
        "the installed metadata is older than pyproject.toml: run `make` (or pip install -e) again"
    )


def test_core_requirements_leave_out_the_model_stack(core_closure: list[str]) -> None:
    """``pip install slotstream`` brings neither torch nor what serving, training or export need."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for core in (
        {canonicalize_name(Requirement(text).name) for text in declared},
        {canonicalize_name(r.name) for r in _core_requirements()},
    ):
        assert core >= {"numpy", "pillow", "grpcio", "protobuf", "av"}, core
        assert not core & HEAVY, f"core requirements {sorted(core & HEAVY)} belong in an extra"
    assert not set(core_closure) & HEAVY, f"{sorted(set(core_closure) & HEAVY)} come with the core requirements"


def test_client_imports_only_core_requirements(core_closure: list[str]) -> None:
    """``service.client`` and ``python -m service.client`` import nothing outside the core requirements, and not
    the server's configuration (the client takes gRPC's limits from ``service.grpc_limits``)."""
    code = (
        "import service.client, service.client.__main__\n"
        "try:\n    import torch\nexcept ModuleNotFoundError:\n    pass\n"
        "else:\n    raise SystemExit('torch is importable: the client-only environment is not one')\n"
    )
    result = _client_only(code, core_closure)
    assert result.returncode == 0, f"the client does not import on a client-only install:\n{result.stderr}"
    imported = json.loads(result.stdout.splitlines()[-1])
    assert {"service", "grpc", "numpy"} <= set(imported), imported
    foreign = _foreign(imported, core_closure)
    assert not foreign, f"imported from distributions outside the core requirements: {foreign}"
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, service.client.__main__; print('service.config' in sys.modules)"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.stdout.strip() == "False", loaded.stderr


def test_client_streams_on_a_client_only_install(
    server: ServerThread, core_closure: list[str], tmp_path: Path
) -> None:
    """``synth``, ``stream`` (a video file, with a GIF overlay and JSON lines) and ``describe`` against a server,
    from a client-only install."""
    clip, overlay, jsonl = tmp_path / "clip.mp4", tmp_path / "overlay.gif", tmp_path / "frames.jsonl"
    code = (
        "from service.client.__main__ import main\n"
        f"assert main(['synth', {str(clip)!r}, '--frames', '5', '--size', '64']) == 0\n"
        f"assert main(['stream', {str(clip)!r}, '--target', {server.target!r}, '--out', {str(overlay)!r}, "
        f"'--jsonl', {str(jsonl)!r}]) == 0\n"
        f"assert main(['describe', '--target', {server.target!r}]) == 0\n"
    )
    result = _client_only(code, core_closure, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(jsonl.read_text().splitlines()) == 5
    assert overlay.stat().st_size > 0
    assert '"num_slots":' in result.stdout, "describe prints the model card"
    foreign = _foreign(json.loads(result.stdout.splitlines()[-1]), core_closure)
    assert not foreign, f"imported from distributions outside the core requirements: {foreign}"


#: (module run with ``-m``, its arguments, the module blocked, the extra and the command named in the refusal)
COMMANDS = [
    ("service", ["--help"], "torch", "server", "slotstream"),
    ("service", ["--help"], "prometheus_client", "server", "slotstream"),
    ("service.bench", ["--local"], "torch", "server", "python -m service.bench"),
    ("service.bench", ["--target", "127.0.0.1:1"], "torch", "server", "python -m service.bench"),
    ("service.demo", ["--help"], "torch", "server", "python -m service.demo"),
    ("service.extract", ["--help"], "torch", "server", "python -m service.extract"),
    ("plugins", ["list"], "pluggy", "server", "python -m plugins"),
    ("training.run", ["--help"], "torch", "train", "python -m training.run"),
    ("training.run", ["--help"], "tensorboard", "train", "python -m training.run"),
    ("training.evaluate", ["--help"], "torch", "train", "python -m training.evaluate"),
    ("training.ceiling", ["--help"], "torch", "train", "python -m training.ceiling"),
    ("training.object_recall", ["--help"], "torch", "train", "python -m training.object_recall"),
    ("training.model_card", ["--help"], "torch", "train", "python -m training.model_card"),
    ("training.datasets", ["--help"], "torch", "train", "python -m training.datasets"),
    ("training.export", ["--help"], "torch", "export", "python -m training.export"),
    ("training.export", ["--help"], "onnxscript", "export", "python -m training.export"),
]


@pytest.mark.parametrize(
    ("module", "args", "blocked", "extra", "command"),
    COMMANDS,
    ids=[f"{c[0]} {c[1][0]} without {c[2]}" for c in COMMANDS],
)
def test_command_refuses_without_its_extra(
    module: str, args: list[str], blocked: str, extra: str, command: str
) -> None:
    """``python -m MODULE`` with a module of its extra missing: one line naming the extra and the module, exit 2."""
    code = f"import runpy, sys\nsys.modules[{blocked!r}] = None\nrunpy.run_module({module!r}, run_name='__main__')\n"
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"{command}: needs the {extra!r} extra (its module {blocked!r} is not installed): "
        f"pip install 'slotstream[{extra}]'\n"
    )


def test_slotstream_script_refuses_without_the_server_extra() -> None:
    """The ``slotstream`` console script calls ``service.__main__:main`` after importing that module."""
    code = "import sys\nsys.modules['torch'] = None\nfrom service.__main__ import main\nsys.exit(main([]))\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("slotstream: needs the 'server' extra (its module 'torch' is not installed)")
    assert len(result.stderr.splitlines()) == 1


def _extra_requirements(extra: str) -> list[Requirement]:
    """pyproject.toml's requirements of ``extra``, with those of the extras it names (``slotstream[server]``)."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    found: list[Requirement] = []
    for text in extras[extra]:
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) == PROJECT:
            found += [r for named in sorted(requirement.extras) for r in _extra_requirements(named)]
        else:
            found.append(requirement)
    return found


@pytest.mark.parametrize("extra", sorted(EXTRA_MODULES))
def test_extra_modules_are_the_extras_requirements(extra: str) -> None:
    """``plugins.extras.EXTRA_MODULES`` checks one module of each unconditional requirement of the extra, and no
    module from elsewhere; all are installed here."""
    owners = importlib.metadata.packages_distributions()
    provided = {module: {canonicalize_name(o) for o in owners.get(module, [])} for module in EXTRA_MODULES[extra]}
    requirements = _extra_requirements(extra)
    names = {canonicalize_name(r.name) for r in requirements}
    for module, distributions in provided.items():
        assert distributions & names, f"{module} (from {sorted(distributions)}) is not a requirement of {extra}"
    checked = set().union(*provided.values())
    unchecked = {canonicalize_name(r.name) for r in requirements if r.marker is None} - checked
    assert not unchecked, f"{extra} requires {sorted(unchecked)}, whose modules EXTRA_MODULES does not check"
    assert missing_module(extra) is None


def test_missing_module_sees_a_blocked_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module set to ``None`` in ``sys.modules`` cannot be imported, even when it is installed (or imported)."""
    monkeypatch.setitem(sys.modules, "scipy", None)
    assert [missing_module(extra) for extra in ("server", "train", "export")] == ["scipy"] * 3
