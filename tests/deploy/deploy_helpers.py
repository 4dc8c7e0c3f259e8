"""Shared by the deploy tests: render the kustomize tree, read what pods run, parse Dockerfiles and .dockerignore.

Rendering needs ``kubectl`` (its built-in kustomize, fully offline). Components cannot be built alone, so each is
rendered on top of the base through a generated scenario kustomization, as microservices-demo's CI does.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
BASE = K8S / "base"
DOCKERFILES = (DEPLOY / "Dockerfile", DEPLOY / "Dockerfile.gpu")

KUBECTL_MISSING = (
    "kubectl is not on PATH, and the deploy tests need it to render the kustomize tree (offline, no cluster). "
    "Install kubectl >= 1.27 (https://kubernetes.io/docs/tasks/tools/), e.g. `apt-get install kubectl` from the "
    "Kubernetes apt repository or the single static binary, then rerun `make test`."
)

#: The server container of the service Deployment.
SERVER_DEPLOYMENT = "slotstream"
SERVER_CONTAINER = "server"


@dataclass(frozen=True)
class Target:
    """Something that must render: a kustomization directory, or the base plus one component."""

    id: str
    directory: Path
    component: Path | None = None


def _kind(directory: Path) -> str:
    data = yaml.safe_load((directory / "kustomization.yaml").read_text()) or {}
    return str(data.get("kind", "Kustomization"))


def render_targets() -> list[Target]:
    """Every kustomization under deploy/k8s, and every component on top of the base (found on disk)."""
    targets = []
    for path in sorted(K8S.rglob("kustomization.yaml")):
        directory = path.parent
        name = directory.relative_to(K8S).as_posix()
        if _kind(directory) == "Component":
            targets.append(Target(f"base+{name}", BASE, directory))
        else:
            targets.append(Target(name, directory))
    return targets


def component_dirs() -> list[Path]:
    """The component directories under deploy/k8s/components."""
    return sorted(p.parent for p in (K8S / "components").glob("*/kustomization.yaml"))


def kubectl() -> str:
    """The kubectl executable; fails the test (never skips) when it is missing."""
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail(KUBECTL_MISSING, pytrace=False)
    return found


class Renderer:
    """Renders targets with ``kubectl kustomize`` (once each), writing component scenarios under ``scratch``."""

    def __init__(self, scratch: Path) -> None:
        self._scratch = scratch
        self._cache: dict[str, list[dict[str, Any]]] = {}

    def __call__(self, target: Target) -> list[dict[str, Any]]:
        if target.id not in self._cache:
            self._cache[target.id] = self._render(target)
        return self._cache[target.id]

    def _render(self, target: Target) -> list[dict[str, Any]]:
        directory = target.directory
        if target.component is not None:
            directory = self._scratch / re.sub(r"[^\w.-]", "_", target.id)
            directory.mkdir(parents=True, exist_ok=True)
            scenario = {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize refuses absolute paths: refer to the repository relative to the scenario directory.
                "resources": [os.path.relpath(target.directory, directory)],
                "components": [os.path.relpath(target.component, directory)],
            }
            (directory / "kustomization.yaml").write_text(yaml.safe_dump(scenario))
        result = subprocess.run(
            [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
        )
        if result.returncode != 0:
            pytest.fail(f"`kubectl kustomize` failed for {target.id}:\n{result.stderr}", pytrace=False)
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


# -- reading rendered documents ------------------------------------------------------------------------------


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Documents of ``kind`` (and ``name``)."""
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one document of ``kind`` (and ``name``)."""
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_templates(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(label, pod spec)`` for every pod the document creates."""
    kind, name = doc["kind"], doc["metadata"]["name"]
    spec = doc.get("spec", {})
    if kind == "Pod":
        yield f"Pod/{name}", spec
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        yield f"{kind}/{name}", spec["template"]["spec"]
    elif kind == "CronJob":
        yield f"CronJob/{name}", spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind == "PyTorchJob":
        for role, replica in spec["pytorchReplicaSpecs"].items():
            yield f"PyTorchJob/{name}/{role}", replica["template"]["spec"]


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    """The container called ``name``."""
    matches = [c for c in pod["containers"] if c["name"] == name]
    assert len(matches) == 1, f"expected one container {name!r}"
    return matches[0]


def server_pod(docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The service Deployment's pod spec, or None for renders without it (training)."""
    found = find(docs, "Deployment", SERVER_DEPLOYMENT)
    return found[0]["spec"]["template"]["spec"] if found else None


def container_env(docs: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, str]:
    """The environment a container gets: ``envFrom`` ConfigMaps of this render, then ``env`` (which wins)."""
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        assert "configMapRef" in source, f"unsupported envFrom source {source} (values unknown to the tests)"
        name = source["configMapRef"]["name"]
        config_maps = find(docs, "ConfigMap", name)
        assert config_maps, f"envFrom names ConfigMap {name!r}, which this render does not contain"
        env.update({key: str(value) for key, value in config_maps[0].get("data", {}).items()})
    for item in spec.get("env", []):
        assert "value" in item, f"env {item['name']} comes from {item.get('valueFrom')}: the tests cannot see it"
        env[item["name"]] = str(item["value"])
    return env


def port_of(address: str) -> int:
    """The port of ``host:port``."""
    return int(address.rpartition(":")[2])


def host_of(address: str) -> str:
    """The host of ``host:port``."""
    return address.rpartition(":")[0]


def named_port(spec: dict[str, Any], name: str) -> int:
    """The containerPort called ``name``."""
    ports = [p["containerPort"] for p in spec.get("ports", []) if p.get("name") == name]
    assert len(ports) == 1, f"container {spec['name']} has no single port named {name!r}"
    return int(ports[0])


# -- Dockerfiles ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with continuation lines joined."""

    keyword: str
    arguments: str
    line: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    """The instructions of a Dockerfile (comments dropped, ``\\`` continuations joined)."""
    instructions = []
    pending = ""
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, arguments = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
    assert not pending, f"{path}: the last instruction ends with a line continuation"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The build stages: each list starts with its FROM."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        assert result, "a Dockerfile starts with FROM"
        result[-1].append(instruction)
    return result


def copy_sources(instruction: Instruction) -> list[str]:
    """The build-context sources of a COPY/ADD (empty for ``--from=`` copies)."""
    words = shlex.split(instruction.arguments)
    flags = [w for w in words if w.startswith("--")]
    if any(f.startswith("--from=") for f in flags):
        return []
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1]


def env_assignments(instructions: list[Instruction]) -> dict[str, str]:
    """``ENV`` values of the given instructions (``KEY=value`` form)."""
    env = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            for word in shlex.split(instruction.arguments):
                key, sep, value = word.partition("=")
                assert sep, f"line {instruction.line}: use ENV KEY=value"
                env[key] = value
    return env


# -- .dockerignore ---------------------------------------------------------------------------------------------


def dockerignore_patterns(path: Path) -> list[str]:
    """The patterns of a .dockerignore file, in order."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def dockerignored(patterns: list[str], path: str) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out of the build context.

    Docker's rules: patterns apply in order and the last one that matches wins; ``!`` re-includes; a pattern
    that matches a parent directory matches everything below it; ``*`` stays within one path segment and ``**``
    spans any number of them.
    """
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        regex = _pattern_regex(os.path.normpath(body.strip()).lstrip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded
