"""The kustomize tree under deploy/k8s renders, validates offline, and keeps the properties the deploy design promises.

Checked without a cluster:
- every kustomization (overlays, base, training setups) and every component on top of the base renders with
  ``kubectl kustomize`` (a missing kubectl fails the tests with install instructions; it never skips them);
- every rendered document validates with kubernetes-validate in strict mode (unknown fields are errors) against
  Kubernetes 1.29 and the newest version the installed package ships;
- CRD kinds (ServiceMonitor, PrometheusRule, PyTorchJob) have no schema there: they are checked structurally here
  and then reported as *skipped* tests that say so; an unexpected kind without a schema fails;
- hardened pods (the restricted Pod Security profile's rules), requests within limits, Guaranteed server pods,
  GPU pods' disk request and CUDA cache, probes and the rollout deadline, selectors and references between
  objects, an image upgrade layered on prod (rendered in a temporary overlay), and the wiring of the multi-node
  training job (its torchrun and training.run flags parse with the real parsers).

Not checked: admission by a real API server (defaults, other cross-field rules, Pod Security admission), the operators
behind the CRDs, scheduling on GPU nodes, and the training job actually running across nodes.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import (
    BASE,
    K8S,
    SERVER_CONTAINER,
    SERVER_DEPLOYMENT,
    Renderer,
    Target,
    component_dirs,
    container,
    find,
    named_port,
    only,
    pod_templates,
    render_targets,
    server_pod,
)
from kubernetes_validate import utils as kv

from service.server import LIVENESS_SERVICE

TARGETS = render_targets()
TARGET_IDS = [t.id for t in TARGETS]
VERSIONS = ("1.29", kv.major_minor(kv.latest_version()))

#: Kinds defined by CRDs, which kubernetes-validate has no schema for: (apiVersion, kind).
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("kubeflow.org/v1", "PyTorchJob"),
}

#: Secrets the manifests mount but do not create: the user creates them (deploy/README.md says how).
EXTERNAL_SECRETS = {"slotstream-tls"}

HANDLERS = ("exec", "grpc", "httpGet", "tcpSocket")


def _target(target_id: str) -> Target:
    return TARGETS[TARGET_IDS.index(target_id)]


USES_SHARED_STORAGE = {"training/indexed-job", "training/pytorchjob", "training/data-shell"}
"""Training setups that run in training/storage's namespace on its volume, applied once beforehand."""


def _label(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# -- rendering and validation ----------------------------------------------------------------------------------


def test_every_overlay_and_component_is_a_target() -> None:
    ids = set(TARGET_IDS)
    assert {"base", "overlays/dev", "overlays/prod"} <= ids
    assert {f"base+components/{c}" for c in ("gpu", "autoscaling", "network-policy", "monitoring", "tls")} <= ids
    assert any(i.startswith("training/") for i in ids)


@pytest.mark.parametrize("target_id", TARGET_IDS)
def test_renders(render: Renderer, target_id: str) -> None:
    docs = render(_target(target_id))
    assert docs, f"{target_id} renders nothing"
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"{target_id}: incomplete document {doc}"
    keys = Counter((d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs)
    assert not [k for k, n in keys.items() if n > 1], f"{target_id}: duplicate objects"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("target_id", TARGET_IDS)
def test_validates_strictly(render: Renderer, target_id: str, version: str) -> None:
    errors = []
    for doc in render(_target(target_id)):
        try:
            kv.validate(doc, version, strict=True)
        except kv.SchemaNotFoundError:
            if (doc["apiVersion"], doc["kind"]) not in CRD_KINDS:
                errors.append(
                    f"{_label(doc)}: no schema for {doc['apiVersion']} {doc['kind']} in Kubernetes {version} "
                    "(a typo, an API removed in this version, or a new CRD to add to CRD_KINDS)"
                )
        except kv.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            errors.append(f"{_label(doc)}: {path}: {error.message}")
    assert not errors, f"{target_id} against Kubernetes {version}:\n  " + "\n  ".join(errors)


@pytest.mark.parametrize("version", VERSIONS)
def test_strict_validation_rejects_unknown_fields(render: Renderer, version: str) -> None:
    """The validator is really strict: a misspelt field in the base Deployment is an error."""
    deployment = copy.deepcopy(only(render(_target("base")), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"grpc": {"port": 50051}}
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, version, strict=True)


def _check_service_monitor(doc: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    selector = doc["spec"]["selector"]["matchLabels"]
    services = [s for s in find(docs, "Service") if _matches(selector, s["metadata"].get("labels", {}))]
    assert services, f"{_label(doc)} selects no Service"
    for endpoint in doc["spec"]["endpoints"]:
        scraped = [s for s in services if endpoint["port"] in {p.get("name") for p in s["spec"]["ports"]}]
        assert len(scraped) == 1, f"{_label(doc)}: port {endpoint['port']!r} must be on exactly one selected Service"


ALERT_SEVERITIES = {"critical", "warning", "info"}
PROMETHEUS_DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")


def _check_prometheus_rule(doc: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    """The operator's PrometheusRule schema in the parts we use, and expressions whose brackets and quotes pair up
    (tests/deploy/test_manifest_config_drift.py checks the metric and label names against the server's)."""
    assert doc["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "slotstream"
    groups = doc["spec"]["groups"]
    assert groups and len({g["name"] for g in groups}) == len(groups), f"{_label(doc)}: groups need unique names"
    alerts = [rule for group in groups for rule in group["rules"]]
    assert alerts and len({r["alert"] for r in alerts}) == len(alerts), f"{_label(doc)}: alert names are unique"
    for rule in alerts:
        where = f"{_label(doc)} {rule.get('alert')}"
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, where
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), f"{where}: expr is a PromQL string"
        assert "for" not in rule or PROMETHEUS_DURATION.fullmatch(rule["for"]), f"{where}: for {rule['for']!r}"
        assert rule["labels"]["severity"] in ALERT_SEVERITIES, where
        assert {"summary", "description"} <= rule["annotations"].keys(), where
        assert all(isinstance(v, str) for v in [*rule["labels"].values(), *rule["annotations"].values()]), where
        expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', rule["expr"])  # string literals may hold any bracket
        assert '"' not in expr.replace('""', ""), f"{where}: unbalanced quotes"
        depth = []
        for char in expr:
            if char in "([{":
                depth.append(char)
            elif char in ")]}":
                assert depth and depth.pop() + char in ("()", "[]", "{}"), f"{where}: unbalanced {char!r}"
        assert not depth, f"{where}: unclosed {depth}"


def _check_pytorchjob(doc: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    replicas = doc["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1
    assert set(replicas) <= {"Master", "Worker"}
    for role, pod in pod_templates(doc):
        spec = container(pod, "pytorch")  # the training operator finds the container by this name
        argv = spec["command"] + spec.get("args", [])
        assert argv[0] == "torchrun", f"{role}: run torchrun (it reads the operator's PET_* variables)"
        gpus = _gpus(spec)
        torchrun = _parse_torchrun(argv[1:], role)
        assert int(doc["spec"]["nprocPerNode"]) == (gpus or 1), f"{role}: nprocPerNode must equal the GPU limit"
        _check_training_run(torchrun, pod, spec, role)


CRD_CHECKS = {
    "ServiceMonitor": _check_service_monitor,
    "PrometheusRule": _check_prometheus_rule,
    "PyTorchJob": _check_pytorchjob,
}


@pytest.mark.parametrize(("api_version", "kind"), sorted(CRD_KINDS))
def test_crd_documents_are_reported_as_skipped(render: Renderer, api_version: str, kind: str) -> None:
    """CRDs get our structural checks, then a skip that says they were not schema-validated."""
    where = []
    for target in TARGETS:
        docs = render(target)
        for doc in docs:
            if (doc["apiVersion"], doc["kind"]) == (api_version, kind):
                CRD_CHECKS[kind](doc, docs)
                where.append(target.id)
    assert where, f"no rendered document is a {kind}: remove it from CRD_KINDS"
    pytest.skip(
        f"{kind} ({api_version}) is a CRD: kubernetes-validate ships no schema for it, so its documents in "
        f"{', '.join(sorted(set(where)))} were checked structurally only, not schema-validated"
    )


# -- every pod -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target_id", TARGET_IDS)
def test_pods_are_hardened(render: Renderer, target_id: str) -> None:
    """The restricted Pod Security profile's rules, resources, and references the API server does not check."""
    docs = render(_target(target_id))
    known = docs + (render(_target("training/storage")) if target_id in USES_SHARED_STORAGE else [])
    claims = {d["metadata"]["name"] for d in find(known, "PersistentVolumeClaim")}
    accounts = {d["metadata"]["name"]: d for d in find(known, "ServiceAccount")}
    for where, pod in (p for doc in docs for p in pod_templates(doc)):
        context = pod.get("securityContext", {})
        assert context.get("runAsNonRoot") is True, where
        assert context.get("runAsUser", 0) > 0, where
        assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert pod.get("automountServiceAccountToken") is False, f"{where}: do not mount an API token"
        account = pod.get("serviceAccountName")
        assert account in accounts, f"{where}: service account {account!r} is not part of this render or storage"
        assert accounts[account].get("automountServiceAccountToken") is False
        assert not (pod.keys() & {"hostNetwork", "hostPID", "hostIPC"}), where
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for volume in volumes.values():
            assert "hostPath" not in volume, f"{where}: hostPath volume {volume['name']}"
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, f"{where}: unknown claim"
            if "secret" in volume:
                assert volume["secret"]["secretName"] in EXTERNAL_SECRETS, f"{where}: undocumented secret"
        for spec in pod["containers"] + pod.get("initContainers", []):
            name = f"{where}/{spec['name']}"
            security = spec.get("securityContext", {})
            assert security.get("allowPrivilegeEscalation") is False, name
            assert security.get("readOnlyRootFilesystem") is True, name
            assert security.get("capabilities", {}).get("drop") == ["ALL"], name
            assert not security.get("capabilities", {}).get("add"), name
            assert security.get("privileged") is not True, name
            image = spec["image"]
            assert re.search(r":[\w.-]+$|@sha256:[0-9a-f]{64}$", image) and not image.endswith(":latest"), name
            resources = spec.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= resources.get(bound, {}).keys(), f"{name}: set {bound} for cpu/memory"
            for mount in spec.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{name}: mounts undeclared volume {mount['name']!r}"
            if "nvidia.com/gpu" in resources.get("limits", {}):
                assert resources["requests"].get("nvidia.com/gpu") == resources["limits"]["nvidia.com/gpu"], name
                assert any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])), name


# -- the service -----------------------------------------------------------------------------------------------

SERVER_TARGETS = [t.id for t in TARGETS if t.id == "base" or t.id.startswith(("overlays/", "base+"))]


@pytest.mark.parametrize("target_id", SERVER_TARGETS)
def test_server_probes(render: Renderer, target_id: str) -> None:
    docs = render(_target(target_id))
    pod = server_pod(docs)
    assert pod is not None
    spec = container(pod, SERVER_CONTAINER)
    grpc_port = named_port(spec, "grpc")
    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = spec.get(probe_name)
        assert probe, f"{target_id}: {probe_name} missing"
        handlers = [h for h in HANDLERS if h in probe]
        assert len(handlers) == 1, f"{target_id}: {probe_name} must have exactly one handler, has {handlers}"
        if "grpc" in probe:
            # grpc.health.v1: readiness and startup ask about the whole server (the empty service name);
            # liveness asks the service that fails while a model call hangs.
            assert probe["grpc"]["port"] == grpc_port
            expected = LIVENESS_SERVICE if probe_name == "livenessProbe" else ""
            assert probe["grpc"].get("service", "") == expected
    startup = spec["startupProbe"]
    assert startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) >= 300, "allow warm-up time"
    readiness, liveness = spec["readinessProbe"], spec["livenessProbe"]
    # A draining or stalled pod leaves the Service within 15 s, well inside the 20 s shutdown grace period.
    assert readiness.get("periodSeconds", 10) * readiness.get("failureThreshold", 3) <= 15, target_id
    # A restart needs 30 s of failed checks, each given 2 s or more: a busy pod is not killed for a slow answer.
    assert liveness.get("periodSeconds", 10) * liveness.get("failureThreshold", 3) >= 30, target_id
    assert liveness.get("timeoutSeconds", 1) >= 2, target_id


@pytest.mark.parametrize("target_id", SERVER_TARGETS)
def test_rollout_deadline_outlasts_the_startup_allowance(render: Renderer, target_id: str) -> None:
    """A new pod may take its startup probe's whole allowance to start; a shorter progress deadline marks the
    rollout as failed meanwhile (ProgressDeadlineExceeded, and `kubectl rollout status` exits 1)."""
    deployments = find(render(_target(target_id)), "Deployment")
    assert deployments, f"{target_id} renders no Deployment"
    for deployment in deployments:
        deadline = deployment["spec"].get("progressDeadlineSeconds", 600)
        for spec in deployment["spec"]["template"]["spec"]["containers"]:
            startup = spec.get("startupProbe")
            if startup is None:
                continue
            # Kubernetes defaults: no initial delay, a check every 10 s, 3 failures.
            delay, period = startup.get("initialDelaySeconds", 0), startup.get("periodSeconds", 10)
            allowance = delay + period * startup.get("failureThreshold", 3)
            assert deadline > allowance, (
                f"{target_id}: {_label(deployment)} has progressDeadlineSeconds {deadline}, but container "
                f"{spec['name']}'s startup probe allows {allowance} s"
            )


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity.removesuffix(suffix)) * factor)
    return int(quantity)


def _quantity(quantity: str) -> float:
    """A resource quantity as a number (CPU in cores: ``500m`` is 0.5)."""
    return float(quantity.removesuffix("m")) / 1000 if quantity.endswith("m") else float(_bytes(quantity))


@pytest.mark.parametrize("target_id", SERVER_TARGETS)
def test_ephemeral_storage_limit_covers_the_scratch_volumes(render: Renderer, target_id: str) -> None:
    """The kubelet evicts a pod whose disk-backed emptyDirs and writable layers exceed the sum of its
    containers' ephemeral-storage limits, whatever each emptyDir's own sizeLimit says."""
    pod = server_pod(render(_target(target_id)))
    assert pod is not None
    scratch = sum(
        _bytes(v["emptyDir"]["sizeLimit"])
        for v in pod.get("volumes", [])
        if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory"
    )
    limit = sum(_bytes(c["resources"]["limits"]["ephemeral-storage"]) for c in pod["containers"])
    assert limit >= scratch, f"{target_id}: ephemeral-storage {limit} bytes < emptyDirs {scratch} bytes"


@pytest.mark.parametrize("target_id", TARGET_IDS)
def test_requests_do_not_exceed_limits(render: Renderer, target_id: str) -> None:
    """The API server rejects a container whose request is above its limit; offline validation does not check it."""
    for where, pod in (p for doc in render(_target(target_id)) for p in pod_templates(doc)):
        for spec in pod["containers"]:
            limits = spec.get("resources", {}).get("limits", {})
            for resource, request in spec.get("resources", {}).get("requests", {}).items():
                if resource in limits:
                    assert _quantity(request) <= _quantity(limits[resource]), (
                        f"{target_id} {where}/{spec['name']}: {resource} request {request} > limit {limits[resource]}"
                    )


@pytest.mark.parametrize("target_id", SERVER_TARGETS)
def test_server_pods_are_guaranteed(render: Renderer, target_id: str) -> None:
    """CPU and memory requests equal their limits (Guaranteed QoS): a Burstable pod above its memory request is the
    first one evicted under node pressure, and every stream it holds ends without a drain."""
    pod = server_pod(render(_target(target_id)))
    assert pod is not None
    for spec in pod["containers"]:
        resources = spec["resources"]
        for resource in ("cpu", "memory"):
            request, limit = resources["requests"][resource], resources["limits"][resource]
            assert _quantity(request) == _quantity(limit), (
                f"{target_id}: {resource} request {request} != limit {limit}"
            )


@pytest.mark.parametrize("target_id", SERVER_TARGETS)
def test_services_and_budget_select_the_server(render: Renderer, target_id: str) -> None:
    docs = render(_target(target_id))
    deployment = only(docs, "Deployment", SERVER_DEPLOYMENT)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _matches(deployment["spec"]["selector"]["matchLabels"], labels)
    spec = container(deployment["spec"]["template"]["spec"], SERVER_CONTAINER)
    ports = {p["name"] for p in spec["ports"]}
    services = find(docs, "Service")
    assert {s["spec"].get("clusterIP") == "None" for s in services} == {True, False}, "ClusterIP and headless"
    for service in services:
        assert _matches(service["spec"]["selector"], labels), f"{_label(service)} selects no server pod"
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
        assert any(p["name"] == "grpc" for p in service["spec"]["ports"]), "port named grpc"
    budget = only(docs, "PodDisruptionBudget")
    assert _matches(budget["spec"]["selector"]["matchLabels"], labels)
    assert "maxUnavailable" in budget["spec"], "minAvailable would block draining a one-replica deployment"
    strategy = deployment["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0, "roll out without losing serving capacity"


def _kustomization(directory: Path) -> dict[str, Any]:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def test_prod_overlay_uses_every_component(render: Renderer) -> None:
    prod = K8S / "overlays" / "prod"
    used = {(prod / c).resolve() for c in _kustomization(prod).get("components", [])}
    assert used == {c.resolve() for c in component_dirs()}
    docs = render(_target("overlays/prod"))
    assert {"HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor", "PrometheusRule"} <= {
        d["kind"] for d in docs
    }
    assert "replicas" not in only(docs, "Deployment")["spec"], "replicas belong to the autoscaler in prod"
    patch = yaml.safe_load((prod / "horizontalpodautoscaler-patch.yaml").read_text())["spec"]
    autoscaler = only(docs, "HorizontalPodAutoscaler")["spec"]
    assert (
        (autoscaler["minReplicas"], autoscaler["maxReplicas"])
        == (patch["minReplicas"], patch["maxReplicas"])
        == (3, 12)
    )


def _images(docs: list[dict[str, Any]]) -> set[str]:
    return {spec["image"] for doc in docs for _, pod in pod_templates(doc) for spec in pod["containers"]}


def test_an_image_upgrade_on_top_of_prod_names_the_registry_image(render: Renderer, tmp_path: Path) -> None:
    """prod has already renamed the image to its registry, so an overlay on top of it must match that name: an
    ``images:`` entry named plain ``slotstream`` changes nothing there (deploy/README.md, "Upgrading the image")."""
    prod = K8S / "overlays" / "prod"
    (registry,) = [i["newName"] for i in _kustomization(prod)["images"] if i["name"] == "slotstream"]
    digest = "sha256:" + "0123456789abcdef" * 4
    assert _images(render(_target("overlays/prod"))) == {f"{registry}:0.1.0-gpu"}

    def upgraded(name: str) -> set[str]:
        directory = tmp_path / re.sub(r"\W", "_", name)
        directory.mkdir()
        overlay = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(prod, directory)],
            "images": [{"name": name, "digest": digest}],
        }
        (directory / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
        return _images(render(Target(f"upgrade-{name}", directory)))

    assert upgraded(registry) == {f"{registry}@{digest}"}, "every server container runs the pinned digest"
    assert upgraded("slotstream") == {f"{registry}:0.1.0-gpu"}, "the plain name no longer matches on top of prod"


def test_dev_overlay_is_small(render: Renderer) -> None:
    docs = render(_target("overlays/dev"))
    assert only(docs, "Deployment")["spec"]["replicas"] == 1
    assert not find(docs, "HorizontalPodAutoscaler")
    assert "nvidia.com/gpu" not in container(server_pod(docs) or {}, SERVER_CONTAINER)["resources"]["limits"]


def test_overlay_namespaces_enforce_restricted_pods(render: Renderer) -> None:
    for target_id in ("overlays/dev", "overlays/prod", "training/storage"):
        docs = render(_target(target_id))
        namespace = only(docs, "Namespace")
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        others = [d for d in docs if d["kind"] != "Namespace"]
        assert {d["metadata"].get("namespace") for d in others} == {namespace["metadata"]["name"]}


def test_gpu_component(render: Renderer) -> None:
    docs = render(_target("base+components/gpu"))
    pod = server_pod(docs)
    assert pod is not None
    spec = container(pod, SERVER_CONTAINER)
    assert spec["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["resources"]["requests"]["nvidia.com/gpu"] == "1", "the request places GPU pods on GPU nodes"
    assert "nodeSelector" not in pod, "a node label that only the GPU operator sets would leave pods Pending"
    assert spec["image"].endswith("-gpu"), "the GPU image (deploy/Dockerfile.gpu)"
    mounts = {m["name"]: m["mountPath"] for m in spec["volumeMounts"]}
    assert mounts.get("engine-cache", "").startswith("/var/cache/slotstream/")


GPU_SERVER_TARGETS = ["base+components/gpu", "overlays/prod", "overlays/prod-shared-engines"]


@pytest.mark.parametrize("target_id", GPU_SERVER_TARGETS)
def test_gpu_pods_keep_the_cuda_jit_cache_on_a_writable_volume(render: Renderer, target_id: str) -> None:
    """CUDA's JIT cache defaults to ~/.nv, on the read-only root filesystem of these pods."""
    pod = server_pod(render(_target(target_id)))
    assert pod is not None
    spec = container(pod, SERVER_CONTAINER)
    assert "nvidia.com/gpu" in spec["resources"]["limits"], f"{target_id} runs no GPU pod"
    env = {e["name"]: e.get("value") for e in spec.get("env", [])}
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    assert env.get("CUDA_CACHE_PATH"), "set CUDA_CACHE_PATH: HOME is on the read-only root filesystem"
    scratch = {v["name"]: v["emptyDir"] for v in pod["volumes"] if "emptyDir" in v}
    holders = [
        m
        for m in spec["volumeMounts"]
        if m["name"] in scratch
        and not m.get("readOnly")
        and Path(env["CUDA_CACHE_PATH"]).is_relative_to(m["mountPath"])
    ]
    assert holders, f"{env['CUDA_CACHE_PATH']} is on no writable emptyDir"
    deepest = max(holders, key=lambda m: len(m["mountPath"]))
    size = scratch[deepest["name"]].get("sizeLimit")
    assert size is None or int(env.get("CUDA_CACHE_MAXSIZE", 2**30)) < _bytes(size), "cap the cache below the volume"


@pytest.mark.parametrize("target_id", SERVER_TARGETS)
def test_ephemeral_storage_request_covers_a_node_local_engine_cache(render: Renderer, target_id: str) -> None:
    """An engine cache on the node's disk is scheduled for: the request covers its sizeLimit."""
    pod = server_pod(render(_target(target_id)))
    assert pod is not None
    caches = [v["emptyDir"] for v in pod["volumes"] if v["name"] == "engine-cache" and "emptyDir" in v]
    request = sum(_bytes(c["resources"]["requests"].get("ephemeral-storage", "0")) for c in pod["containers"])
    for cache in caches:
        assert request >= _bytes(cache["sizeLimit"]), f"{target_id}: ephemeral-storage request below the engine cache"


def test_shared_engine_cache_overlay_is_prod_with_the_engines_on_one_shared_volume(render: Renderer) -> None:
    """Every replica mounts one ReadWriteMany claim where the gpu component had a per-pod emptyDir; everything
    else is the prod overlay's."""
    prod, shared = render(_target("overlays/prod")), render(_target("overlays/prod-shared-engines"))
    claim = only(shared, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "pods on different nodes mount it at once"
    pod = server_pod(shared)
    assert pod is not None
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["engine-cache"] == {
        "name": "engine-cache",
        "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]},
    }, "one volume source: the claim, with the emptyDir gone"
    assert claim["metadata"]["namespace"] == only(shared, "Deployment")["metadata"]["namespace"]
    mounts = {m["name"]: m["mountPath"] for m in container(pod, SERVER_CONTAINER)["volumeMounts"]}
    config = only(shared, "ConfigMap")["data"]
    assert mounts["engine-cache"] == config["SLOTSTREAM_TENSORRT_CACHE_DIR"], "the engines go to the claim"
    assert config["SLOTSTREAM_BACKEND"] == "tensorrt", "the backend whose engine files are written atomically"
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch", "no recursive chown per pod start"
    assert _without_engine_cache(shared) == _without_engine_cache(prod)


def _without_engine_cache(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``docs`` without the engine cache: its claim, its volume and the disk request and limit sized for
    it."""
    kept = [copy.deepcopy(d) for d in docs if d["kind"] != "PersistentVolumeClaim"]
    for doc in kept:
        if doc["kind"] == "Deployment":
            spec = doc["spec"]["template"]["spec"]
            spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "engine-cache"]
            spec["securityContext"].pop("fsGroupChangePolicy", None)
            for bound in ("requests", "limits"):
                container(spec, SERVER_CONTAINER)["resources"][bound].pop("ephemeral-storage")
    return kept


def test_autoscaling_component(render: Renderer) -> None:
    docs = render(_target("base+components/autoscaling"))
    hpa = only(docs, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert only(docs, target["kind"], target["name"])
    assert "replicas" not in only(docs, "Deployment")["spec"], "re-applying must not reset the autoscaler"
    kinds = {
        (m["type"], (m.get("resource") or m.get("pods", {}).get("metric", {})).get("name"))
        for m in hpa["spec"]["metrics"]
    }
    assert kinds == {("Resource", "cpu"), ("Pods", "slotstream_streams_active")}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_network_policy_ports_exist(render: Renderer) -> None:
    docs = render(_target("base+components/network-policy"))
    policy = only(docs, "NetworkPolicy")
    deployment = only(docs, "Deployment")
    assert _matches(policy["spec"]["podSelector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"])
    names = {p["name"] for p in container(deployment["spec"]["template"]["spec"], SERVER_CONTAINER)["ports"]}
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert allowed == names, "every server port is reachable by someone, by name"
    assert "Egress" in policy["spec"]["policyTypes"] and policy["spec"]["egress"] == [], "the server connects nowhere"


def test_tls_component_mounts_the_certificates(render: Renderer) -> None:
    docs = render(_target("base+components/tls"))
    pod = server_pod(docs)
    assert pod is not None
    spec = container(pod, SERVER_CONTAINER)
    secret_volumes = {v["name"] for v in pod["volumes"] if "secret" in v}
    mounts = [m for m in spec["volumeMounts"] if m["name"] in secret_volumes]
    assert mounts and all(m.get("readOnly") for m in mounts)
    assert not any("grpc" in spec[p] for p in ("startupProbe", "readinessProbe", "livenessProbe")), (
        "kubelet's gRPC probes cannot speak TLS"
    )


def test_base_needs_no_component() -> None:
    assert _kustomization(BASE).get("components") is None


# -- training --------------------------------------------------------------------------------------------------


def _gpus(spec: dict[str, Any]) -> int:
    return int(spec.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def _parse_torchrun(argv: list[str], where: str) -> Any:
    from torch.distributed.run import get_args_parser

    try:
        return get_args_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: torchrun rejects {shlex.join(argv)}")


def _check_training_run(torchrun: Any, pod: dict[str, Any], spec: dict[str, Any], where: str) -> None:
    from training.configs import get_config
    from training.run import parse_args

    assert torchrun.module and torchrun.training_script == "training.run", f"{where}: torchrun -m training.run"
    try:
        args = parse_args(torchrun.training_script_args)
    except SystemExit:
        pytest.fail(f"{where}: training.run rejects {shlex.join(torchrun.training_script_args)}")
    get_config(args.config)  # KeyError: no such shipped config
    assert args.resume, f"{where}: pass --resume so a restarted pod continues from the newest checkpoint"
    assert args.device == ("cuda" if _gpus(spec) else "cpu"), f"{where}: --device must match the GPU limit"
    claims = {v["name"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    persistent = [m["mountPath"] for m in spec["volumeMounts"] if m["name"] in claims]
    assert args.out and any(Path(args.out).is_relative_to(p) for p in persistent), f"{where}: --out on the volume"


INDEXED_JOB_TARGETS = ["training/indexed-job", "training/cpu-smoke"]


@pytest.mark.parametrize("target_id", INDEXED_JOB_TARGETS)
def test_indexed_job_wiring(render: Renderer, target_id: str) -> None:
    """Node count, rendezvous name and port, and the torchrun and training.run flags, with the real parsers."""
    docs = render(_target(target_id))
    job = only(docs, "Job")
    name = job["metadata"]["name"]
    pod = job["spec"]["template"]["spec"]
    spec = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in spec["env"]}
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == int(env["NNODES"]) >= 2
    assert int(env["NPROC_PER_NODE"]) == (_gpus(spec) or 1), "one process per GPU"
    assert pod["restartPolicy"] == "Never"

    service = only(docs, "Service", pod["subdomain"])
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": name}

    script = spec["args"][0]
    assert spec["command"] == ["/bin/sh", "-c"]
    remote = re.search(r"else host=([\w.-]+);", script)
    assert remote and remote.group(1) == f"{name}-0.{service['metadata']['name']}", "pod 0's DNS name"
    assert '"$JOB_COMPLETION_INDEX" = 0' in script
    launch = script.splitlines()[-1]
    values = {**env, "host": remote.group(1), "POD_IP": "10.0.0.2"}
    expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], launch)
    words = shlex.split(expanded)
    assert words[:2] == ["exec", "torchrun"], "exec: torchrun gets the signals"
    torchrun = _parse_torchrun(words[2:], target_id)
    assert torchrun.rdzv_backend == "c10d" and int(torchrun.nnodes) == int(env["NNODES"])
    port = int(torchrun.rdzv_endpoint.rpartition(":")[2])
    assert port == service["spec"]["ports"][0]["port"] == named_port(spec, "rendezvous")
    _check_training_run(torchrun, pod, spec, target_id)


def test_training_volume_is_shared_across_nodes(render: Renderer) -> None:
    claim = only(render(_target("training/storage")), "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "every node reads the checkpoint on --resume"


@pytest.mark.parametrize("target_id", sorted(USES_SHARED_STORAGE))
def test_deleting_a_training_setup_keeps_the_shared_volume(render: Renderer, target_id: str) -> None:
    """``kubectl delete -k`` deletes what a kustomization renders: a job or the data shell must not render the
    namespace or the volume that hold every dataset and run, and must run in that namespace."""
    docs = render(_target(target_id))
    assert not find(docs, "Namespace") and not find(docs, "PersistentVolumeClaim"), target_id
    storage_namespace = only(render(_target("training/storage")), "Namespace")["metadata"]["name"]
    assert {d["metadata"]["namespace"] for d in docs} == {storage_namespace}, target_id


def test_the_cpu_smoke_test_keeps_to_a_namespace_and_volume_of_its_own(render: Renderer) -> None:
    docs = render(_target("training/cpu-smoke"))
    namespace = only(docs, "Namespace")["metadata"]["name"]
    storage_namespace = only(render(_target("training/storage")), "Namespace")["metadata"]["name"]
    assert namespace != storage_namespace
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {namespace}
    assert only(docs, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOnce"]
