"""The manifests against the code they configure, so that config, server and manifests cannot drift apart.

For every render that runs the server (base, each component on the base, each overlay):
- every variable the server container gets (its ConfigMap and ``env``) is a ``ServiceConfig`` setting
  (``SLOTSTREAM_<FIELD>``) or the plugin registry's ``SLOTSTREAM_DISABLE_PLUGINS``, and together the settings
  build a valid ``ServiceConfig`` (types, ranges, choices); any other variable must be on an explicit list, with
  its reason (today the CUDA JIT cache's, which the gpu component moves to a writable volume);
- every render serves the model under one explicit name (``SLOTSTREAM_MODEL_NAME``), never the directory's;
- a render that picks the onnx or tensorrt backend names an export directory that the image it runs creates;
- the container port named ``grpc``, the Service ports and the gRPC probe ports equal the port of the server's
  default ``listen`` address, and the ``metrics`` port the port of its default ``metrics_listen``; inside the
  pod both listen on 0.0.0.0;
- ``terminationGracePeriodSeconds`` outlasts the configured drain (``grace_period_s``) by at least 5 s;
- the autoscaler's streams metric is one the server exports, with a target below ``max_streams``;
- every metric, label and label value the alerting rules select is one ``service.metrics.Metrics`` exports;
- the server container's CPU request equals its limit, to which the server sizes its model instances;
- at its settings the server cannot outgrow its memory limit (``ServiceConfig.memory_warnings``);
- the TLS component's readiness command really reads the server's ready gauge and heartbeat: it runs here against
  ``service.metrics.Metrics`` served on a free port.
And every image the manifests name carries the project version from pyproject.toml.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from deploy_helpers import (
    DEPLOY,
    REPO,
    SERVER_CONTAINER,
    Renderer,
    container,
    container_env,
    find,
    host_of,
    named_port,
    only,
    parse_dockerfile,
    pod_templates,
    port_of,
    render_targets,
    server_pod,
)

from plugins.registry import BLOCK_ENV_VAR
from service.config import ServiceConfig
from service.config_sources import ENV_PREFIX
from service.metrics import Metrics

TARGETS = render_targets()
SERVER_TARGETS = [t for t in TARGETS if t.id == "base" or t.id.startswith(("overlays/", "base+"))]
SERVER_IDS = [t.id for t in SERVER_TARGETS]
DEFAULTS = ServiceConfig()
#: ServiceConfig settings, and the plugin block list, which the plugin registry reads (not a service flag).
KNOWN_VARIABLES = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(ServiceConfig)} | {BLOCK_ENV_VAR}

#: Variables other than SLOTSTREAM_ settings the server container may get, each because a library the server uses
#: reads it: the CUDA driver's JIT cache location and size (the gpu component moves it off the read-only root).
OTHER_SERVER_VARIABLES: frozenset[str] = frozenset({"CUDA_CACHE_PATH", "CUDA_CACHE_MAXSIZE"})

EXPORT_COMMAND = re.compile(r"python -m training\.export --model \S+ --out (\S+)")
EXPORT_BACKENDS = ("onnx", "tensorrt")

DRAIN_MARGIN_S = 5  # serving.md: drain window <= terminationGracePeriodSeconds - 5 s


def _server(render: Renderer, target_id: str) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    docs = render(SERVER_TARGETS[SERVER_IDS.index(target_id)])
    pod = server_pod(docs)
    assert pod is not None, f"{target_id} does not run the server"
    return docs, pod, container(pod, SERVER_CONTAINER)


def _config(docs: list[dict[str, Any]], spec: dict[str, Any]) -> ServiceConfig:
    return ServiceConfig.from_sources([], environ=container_env(docs, spec))


@pytest.mark.parametrize("target_id", SERVER_IDS)
def test_server_environment_is_exactly_service_config_settings(render: Renderer, target_id: str) -> None:
    docs, _, spec = _server(render, target_id)
    env = container_env(docs, spec)
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in KNOWN_VARIABLES)
    assert not unknown, f"{target_id}: {unknown} are not ServiceConfig settings (see `python -m service --help`)"
    others = sorted(k for k in env if not k.startswith(ENV_PREFIX) and k not in OTHER_SERVER_VARIABLES)
    assert not others, f"{target_id}: {others} are not ServiceConfig settings"
    _config(docs, spec)  # raises ConfigError listing every invalid value


def test_every_render_serves_the_model_under_one_explicit_name(render: Renderer) -> None:
    """Clients open streams by model name and the metrics carry it as the ``model`` label: a name taken from the
    model directory would differ between overlays (``default`` on the CPU image, ``default-onnx`` on the GPU
    export) and change with every versioned model folder, so every render sets ``SLOTSTREAM_MODEL_NAME``."""
    names = {}
    for target_id in SERVER_IDS:
        docs, _, spec = _server(render, target_id)
        assert container_env(docs, spec).get(f"{ENV_PREFIX}MODEL_NAME"), (
            f"{target_id}: set {ENV_PREFIX}MODEL_NAME, or the model is named after its directory"
        )
        names[target_id] = _config(docs, spec).resolved_model_name
    assert len(set(names.values())) == 1, f"every render must serve the same model name: {names}"


def _image_exports(dockerfile: Path) -> set[str]:
    """Absolute paths of the ONNX exports a Dockerfile's ``RUN python -m training.export`` lines write."""
    exports: set[str] = set()
    workdir = PurePosixPath("/")
    for instruction in parse_dockerfile(dockerfile):
        if instruction.keyword == "WORKDIR":
            workdir = workdir / instruction.arguments
        elif instruction.keyword == "RUN":
            exports |= {str(workdir / out) for out in EXPORT_COMMAND.findall(instruction.arguments)}
    return exports


def test_export_backends_serve_an_export_their_image_makes(render: Renderer) -> None:
    """The onnx and tensorrt backends refuse a plain model directory, so such renders name the image's export."""
    checked = []
    for target_id in SERVER_IDS:
        docs, _, spec = _server(render, target_id)
        config = _config(docs, spec)
        if config.backend not in EXPORT_BACKENDS:
            continue
        dockerfile = DEPLOY / ("Dockerfile.gpu" if spec["image"].endswith("-gpu") else "Dockerfile")
        exports = _image_exports(dockerfile)
        assert str(config.model_dir) in exports, (
            f"{target_id}: backend {config.backend} serves {config.model_dir}, but {dockerfile.name} exports "
            f"only {sorted(exports)}"
        )
        checked.append(target_id)
    assert "base+components/gpu" in checked and "overlays/prod" in checked


@pytest.mark.parametrize("target_id", SERVER_IDS)
def test_ports_match_the_server_defaults(render: Renderer, target_id: str) -> None:
    docs, _, spec = _server(render, target_id)
    config = _config(docs, spec)
    grpc_port = port_of(DEFAULTS.listen)
    metrics_port = port_of(DEFAULTS.metrics_listen)
    assert port_of(config.listen) == grpc_port == named_port(spec, "grpc")
    assert config.metrics_listen, "metrics stay on: the monitoring component and TLS readiness check read them"
    assert port_of(config.metrics_listen) == metrics_port == named_port(spec, "metrics")
    assert host_of(config.listen) == host_of(config.metrics_listen) == "0.0.0.0", "reachable from outside the pod"
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = spec[name]
        if "grpc" in probe:
            assert probe["grpc"]["port"] == grpc_port, f"{target_id}: {name} checks another port"
        if "tcpSocket" in probe:
            assert probe["tcpSocket"]["port"] in ("grpc", grpc_port)
    service_ports = {p["name"]: p["port"] for s in find(docs, "Service") for p in s["spec"]["ports"]}
    assert service_ports["grpc"] == grpc_port
    assert service_ports.get("metrics", metrics_port) == metrics_port


@pytest.mark.parametrize("target_id", SERVER_IDS)
def test_termination_grace_outlasts_the_drain(render: Renderer, target_id: str) -> None:
    docs, pod, spec = _server(render, target_id)
    config = _config(docs, spec)
    assert pod["terminationGracePeriodSeconds"] >= config.grace_period_s + DRAIN_MARGIN_S, (
        f"{target_id}: the kubelet would kill the server while it drains streams for {config.grace_period_s} s"
    )


@pytest.mark.parametrize("target_id", [i for i in SERVER_IDS if i in ("base+components/autoscaling", "overlays/prod")])
def test_autoscaler_streams_metric_exists_and_fits(render: Renderer, target_id: str) -> None:
    docs, _, spec = _server(render, target_id)
    config = _config(docs, spec)
    exported = {family.name for family in Metrics().registry.collect()}
    hpa = only(docs, "HorizontalPodAutoscaler")
    pods = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods, "the autoscaler uses the active-streams metric"
    for metric in pods:
        assert metric["metric"]["name"] in exported, f"service.metrics exports no {metric['metric']['name']}"
        assert float(metric["target"]["averageValue"]) < config.max_streams, "scale out before opens are refused"


#: Labels Prometheus adds to every series it scrapes through a ServiceMonitor (the target's, not the server's).
TARGET_LABELS = {"namespace", "pod", "service", "endpoint", "job", "instance", "container"}
SAMPLE_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}


def _exported_series() -> dict[str, dict[str, set[str]]]:
    """Every series name ``service.metrics.Metrics`` exports -> its label names -> the values it exports for them
    (labelled families without pre-exported values get one child, so that their label names are known)."""
    metrics = Metrics()
    metrics.add_model("default")
    for family in vars(metrics).values():
        names = getattr(family, "_labelnames", ())
        if names and not any(s.labels for f in family.collect() for s in f.samples):
            family.labels(*["default"] * len(names))
    series: dict[str, dict[str, set[str]]] = {}
    for family in metrics.registry.collect():
        for name in [family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ("",))]:
            series.setdefault(name, {})
        for sample in family.samples:
            labels = series.setdefault(sample.name, {})
            for key, value in sample.labels.items():
                labels.setdefault(key, set()).add(value)
    return series


def test_alert_rules_use_only_metrics_and_labels_the_server_exports(render: Renderer) -> None:
    """A misspelt metric (``_buckets``, a counter without ``_total``), label or label value makes an alert that can
    never fire; Prometheus accepts it all the same."""
    exported = _exported_series()
    rules = [
        r
        for d in find(render(SERVER_TARGETS[SERVER_IDS.index("overlays/prod")]), "PrometheusRule")
        for g in d["spec"]["groups"]
        for r in g["rules"]
    ]
    assert rules, "prod renders the monitoring component's alerts"
    used = set()
    for rule in rules:
        expr, where = rule["expr"], rule["alert"]
        names = set(re.findall(r"\bslotstream_\w+", expr))
        assert names, f"{where} uses no slotstream metric"
        unknown = sorted(names - exported.keys())
        assert not unknown, f"{where}: service/metrics.py exports no {unknown}"
        used |= names
        known = set().union(*(exported[n].keys() for n in names)) | TARGET_LABELS
        for name, selector in re.findall(r"\b(slotstream_\w+)\{([^}]*)\}", expr):
            for label, operator, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', selector):
                assert label in exported[name], f"{where}: {name} has no label {label!r}"
                if operator == "=":
                    assert value in exported[name][label], f"{where}: {name} never has {label}={value!r}"
        for grouping in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            labels = {label.strip() for label in grouping.split(",") if label.strip()}
            assert labels <= known, f"{where}: groups by {sorted(labels - known)}, which its series do not carry"
    expected = {
        "slotstream_calls_refused_total",
        "slotstream_frames_dropped_total",
        "slotstream_e2e_seconds_bucket",
        "slotstream_event_loop_heartbeat_seconds",
        "slotstream_live",
        "slotstream_ready",
        "slotstream_streams_not_reading",
    }
    assert expected <= used, f"alerts missing for {sorted(expected - used)}"


@pytest.mark.parametrize("target_id", SERVER_IDS)
def test_cpu_request_equals_the_limit_the_server_sizes_itself_to(render: Renderer, target_id: str) -> None:
    """Automatic model instances follow the CPU limit (the cgroup quota); a lower request overcommits the node and
    makes the autoscaler's CPU target (a share of the request) trip at a fraction of the pod's capacity."""
    _, _, spec = _server(render, target_id)
    resources = spec["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"], resources


_MEMORY_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "": 1}


@pytest.mark.parametrize("target_id", SERVER_IDS)
def test_the_server_settings_fit_the_memory_limit(render: Renderer, target_id: str) -> None:
    """At its settings the server must not be able to outgrow its container: every stream receiving a frame of the
    largest size at once, plus the unread replies of all of them, stay within half of the memory limit (the
    server's own start-up check, ``ServiceConfig.memory_warnings``), so no set of clients gets the pod OOM-killed."""
    docs, _, spec = _server(render, target_id)
    quantity = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|)", spec["resources"]["limits"]["memory"])
    assert quantity is not None, spec["resources"]["limits"]
    limit = int(quantity[1]) * _MEMORY_UNITS[quantity[2]]
    assert _config(docs, spec).memory_warnings(memory_limit=limit) == []


def _ready_check(spec: dict[str, Any], probe: str) -> str:
    command = spec[probe]["exec"]["command"]
    assert command[:2] == ["python", "-c"]
    return str(command[2])


@contextlib.contextmanager
def _tls_probe(render: Renderer, probe: str) -> Iterator[tuple[Metrics, Callable[[], int]]]:
    """The ``tls`` component's exec ``probe`` aimed at a live metrics endpoint: yields the metrics to set and a
    function running the probe's script (its exit status)."""
    docs, _, spec = _server(render, "base+components/tls")
    config = _config(docs, spec)
    script = _ready_check(spec, probe)
    url = f"http://127.0.0.1:{port_of(config.metrics_listen)}/metrics"
    assert url in script, f"the check must read {url}"
    metrics = Metrics()
    try:
        port = metrics.serve_http("127.0.0.1:0")
        local = script.replace(url, f"http://127.0.0.1:{port}/metrics")

        def check() -> int:
            return subprocess.run([sys.executable, "-I", "-c", local], capture_output=True, timeout=30).returncode

        yield metrics, check
    finally:
        metrics.close()


def test_tls_ready_check_reads_the_ready_gauge(render: Renderer) -> None:
    _, _, spec = _server(render, "base+components/tls")
    assert _ready_check(spec, "startupProbe") == _ready_check(spec, "readinessProbe")
    with _tls_probe(render, "readinessProbe") as (metrics, check):
        metrics.loop_heartbeat.set(time.time())
        assert check() != 0, "not ready while the gauge is 0 (loading, warming up, draining)"
        metrics.ready.set(1)
        assert check() == 0, "ready once the gauge is 1"
        metrics.loop_heartbeat.set(time.time() - 15)
        assert check() != 0, "not ready while the event loop is blocked (a gRPC probe would time out)"


@pytest.mark.parametrize("probe", ["readinessProbe", "livenessProbe"])
def test_tls_checks_report_an_unreachable_endpoint_in_one_line(render: Renderer, probe: str) -> None:
    """During start-up the metrics port may not listen yet: the failure is one line in the pod's events."""
    _, _, spec = _server(render, "base+components/tls")
    script = _ready_check(spec, probe).replace("127.0.0.1:9464", "127.0.0.1:9")  # the discard port: refused
    failed = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=30)
    assert failed.returncode == 1
    assert failed.stderr.startswith("metrics endpoint not reachable:") and "Traceback" not in failed.stderr


def test_tls_liveness_check_reads_the_live_gauge_and_the_event_loop_heartbeat(render: Renderer) -> None:
    """Without gRPC probes, liveness must still fail on a stalled or failing model (``slotstream_live``) and on a
    blocked event loop (an old heartbeat), as the Liveness health service does."""
    with _tls_probe(render, "livenessProbe") as (metrics, check):
        metrics.live.set(1)
        metrics.loop_heartbeat.set(time.time())
        assert check() == 0, "live: model healthy, event loop beating"
        metrics.live.set(0)
        assert check() != 0, "not live while the model is stalled or failing"
        metrics.live.set(1)
        metrics.loop_heartbeat.set(time.time() - 60)
        assert check() != 0, "not live when the event loop has not beaten for a minute"


def test_tls_settings_point_into_the_secret_mount(render: Renderer) -> None:
    docs, pod, spec = _server(render, "base+components/tls")
    config = _config(docs, spec)
    secrets = {v["name"] for v in pod["volumes"] if "secret" in v}
    mounts = [Path(m["mountPath"]) for m in spec["volumeMounts"] if m["name"] in secrets]
    for path in (config.tls_cert, config.tls_key, config.tls_client_ca):
        assert path is not None and any(path.is_relative_to(m) for m in mounts), f"{path} is not in the secret"


def test_images_carry_the_project_version(render: Renderer) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    seen = set()
    for target in TARGETS:
        for doc in render(target):
            for where, pod in pod_templates(doc):
                for spec in pod["containers"]:
                    name, _, tag = spec["image"].rpartition(":")
                    assert name.split("/")[-1] == "slotstream", f"{target.id} {where}: {spec['image']}"
                    assert tag in (version, f"{version}-gpu"), (
                        f"{target.id} {where}: image tag {tag!r} does not follow pyproject.toml's version {version}; "
                        "update the tags in deploy/k8s (and the build commands in deploy/README.md)"
                    )
                    seen.add(tag)
    assert seen == {version, f"{version}-gpu"}
