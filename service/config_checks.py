"""What is wrong with a :class:`~service.config.ServiceConfig`: its values (:func:`config_problems`, checked when it
is built) and the files it names (:func:`file_problems`, checked before the server starts), each problem naming the
flag that sets it; and the settings' choices and bounds those checks hold them to."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from plugins.frame_fit import FRAME_FITS as SERVED_FITS
from plugins.model_files import CONFIG_FILE, WEIGHTS_FILE, run_folder_hint
from service.grpc_limits import MAX_GRPC_MESSAGE_BYTES
from service.host import decodable_pixels
from service.shared_memory import shared_memory_supported
from service.tls_files import tls_file_problems

if TYPE_CHECKING:
    from service.config import ServiceConfig

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models" / "default"
BACKENDS = ("torch", "onnx", "tensorrt")
LOG_FORMATS = ("json", "text")
FRAME_FITS = ("auto", *SERVED_FITS)
"""``--frame-fit`` choices: ``auto`` (each model's training fit, ``SessionLimits.frame_fit_for``), then the proto's
``FRAME_FIT_*`` names in lower case (``plugins.frame_fit.FRAME_FITS``)."""
ONNX_GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "all")


DEFAULT_TRACE_SAMPLE_RATIO = 0.01
"""``--trace-sample-ratio`` unless given: one frame in a hundred of those that carry no trace context."""

MAX_THREADS = 1024
"""Most threads a thread setting takes: far more than any machine's cores; torch crashes (a segmentation fault,
no message) on a team of 100,000."""

MAX_BATCH_SIZE = 1024
"""Largest ``--max-batch-size``: the engine is warmed up (and TensorRT's profile built) at it, and each frame of a
batch is a float32 copy of the model's input."""

MAX_RESUME_HISTORY = 36_000
"""Largest ``--resume-history``: five minutes (the default ``--max-resume-window-s``) at 120 frames/s. Each entry
keeps one stream state, for every stream, and the wire field that reports it is 32 bits."""


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem and the flag that sets it."""


def flag_name(name: str) -> str:
    """The flag of the field ``name``, without its dashes: ``max_streams`` is ``max-streams``."""
    return name.replace("_", "-")


def config_problems(config: ServiceConfig) -> list[str]:
    """Every problem of ``config``'s values, each naming the flag that sets it; empty when there is none."""
    return [
        *_address_problems(config),
        *_number_problems(config),
        *_choice_problems(config),
        *_security_and_tracing_problems(config),
    ]


def _address_problems(config: ServiceConfig) -> list[str]:
    """``--listen`` and ``--metrics-listen``: each a host:port, and not the same socket."""
    problems = []
    for name in ("listen", "metrics_listen"):
        value = getattr(config, name)
        if (value or name == "listen") and not _is_host_port(value):
            problems.append(f"--{flag_name(name)} must be host:port, got {value!r}")
    both = _is_host_port(config.listen) and _is_host_port(config.metrics_listen)
    if both and _same_socket(config.listen, config.metrics_listen):
        problems.append(
            f"--metrics-listen {config.metrics_listen} takes the port of --listen {config.listen}: the metrics need a "
            "port of their own"
        )
    return problems


def _number_problems(config: ServiceConfig) -> list[str]:
    """Counts, sizes, durations and thread settings: finite and within their bounds."""
    problems = []
    positive = (
        "max_streams",
        "resume_history",
        "max_batch_size",
        "max_pending_frames",
        "max_buffered_reply_bytes",
        "decode_threads",
    )
    problems += [
        f"--{flag_name(n)} must be >= 1, got {getattr(config, n)}" for n in positive if getattr(config, n) < 1
    ]
    budget, smallest = config.max_total_buffered_reply_bytes, config.min_reply_budget_bytes()
    if budget < 0 or 0 < budget < smallest:
        problems.append(
            f"--max-total-buffered-reply-bytes must be 0 (auto) or at least {smallest} (3 replies of "
            f"--max-message-bytes: one stream's window of one and the two gRPC holds), got {budget}"
        )
    if config.max_calls < 0:
        problems.append(f"--max-calls must be >= 0 (0: automatic), got {config.max_calls}")
    if 0 < config.max_calls < config.max_streams:
        problems.append(
            f"--max-calls {config.max_calls} is below --max-streams {config.max_streams}: each stream is a call"
        )
    if not (math.isfinite(config.open_timeout_s) and config.open_timeout_s > 0):
        problems.append(f"--open-timeout-s must be a number > 0, got {config.open_timeout_s}")
    if config.max_streams_per_client < 0:
        problems.append(f"--max-streams-per-client must be >= 0 (0: no limit), got {config.max_streams_per_client}")
    non_negative_durations = (
        "max_resume_window_s",
        "max_queue_delay_ms",
        "inline_model_max_ms",
        "grace_period_s",
        "model_stall_timeout_s",
    )
    # NaN compares false with everything, so the range checks below cannot catch it.
    problems += [
        f"--{flag_name(n)} must be a finite number, got {getattr(config, n)}"
        for n in ("idle_timeout_s", "max_idle_timeout_s", *non_negative_durations)
        if not math.isfinite(getattr(config, n))
    ]
    if config.idle_timeout_s <= 0 or config.max_idle_timeout_s < config.idle_timeout_s:
        problems.append("need 0 < --idle-timeout-s <= --max-idle-timeout-s")
    non_negative = (
        *non_negative_durations,
        "model_instances",
        "model_failure_limit",
        "torch_threads",
        "onnx_intra_op_threads",
        "onnx_inter_op_threads",
    )
    problems += [
        f"--{flag_name(n)} must be >= 0, got {getattr(config, n)}" for n in non_negative if getattr(config, n) < 0
    ]
    largest = {
        "max_batch_size": (MAX_BATCH_SIZE, "the model is warmed up at it, and each frame of it is a float32 copy"),
        "resume_history": (MAX_RESUME_HISTORY, "five minutes at 120 frames/s; each entry keeps a stream state"),
    }
    problems += [
        f"--{flag_name(n)} must be at most {most} ({why}), got {getattr(config, n)}"
        for n, (most, why) in largest.items()
        if getattr(config, n) > most
    ]
    thread_counts = ("torch_threads", "onnx_intra_op_threads", "onnx_inter_op_threads", "decode_threads")
    problems += [
        f"--{flag_name(n)} must be at most {MAX_THREADS} (a thread team that large ends the process), got "
        f"{getattr(config, n)}"
        for n in thread_counts
        if getattr(config, n) > MAX_THREADS
    ]
    if not 1024 * 1024 <= config.max_message_bytes <= MAX_GRPC_MESSAGE_BYTES:
        problems.append(
            f"--max-message-bytes must be between 1 MiB and {MAX_GRPC_MESSAGE_BYTES} (gRPC's limit), "
            f"got {config.max_message_bytes}"
        )
    largest_image = decodable_pixels()
    if not 1 <= config.max_image_pixels <= largest_image:
        problems.append(
            f"--max-image-pixels must be between 1 and {largest_image} (beyond it the image decoder refuses "
            f"images as decompression bombs), got {config.max_image_pixels}"
        )
    if config.tensorrt_workspace_mb < 1:
        problems.append(f"--tensorrt-workspace-mb must be >= 1, got {config.tensorrt_workspace_mb}")
    return problems


def _choice_problems(config: ServiceConfig) -> list[str]:
    """Settings with a fixed set of choices (backend, graph optimisation, frame fit, logging)."""
    problems = []
    if config.backend not in BACKENDS:
        problems.append(f"--backend must be one of {', '.join(BACKENDS)}, got {config.backend!r}")
    if config.onnx_graph_optimization not in ONNX_GRAPH_OPTIMIZATIONS:
        choices = ", ".join(ONNX_GRAPH_OPTIMIZATIONS)
        problems.append(f"--onnx-graph-optimization must be one of {choices}, got {config.onnx_graph_optimization!r}")
    if config.frame_fit not in FRAME_FITS:
        problems.append(f"--frame-fit must be one of {', '.join(FRAME_FITS)}, got {config.frame_fit!r}")
    if config.log_format not in LOG_FORMATS:
        problems.append(f"--log-format must be one of {', '.join(LOG_FORMATS)}, got {config.log_format!r}")
    if not isinstance(logging.getLevelName(config.log_level.upper()), int):
        problems.append(f"--log-level must be a logging level such as INFO or DEBUG, got {config.log_level!r}")
    return problems


def _security_and_tracing_problems(config: ServiceConfig) -> list[str]:
    """TLS and token settings that go together or exclude each other, shared memory, and tracing."""
    problems = []
    if (config.tls_cert is None) != (config.tls_key is None):
        problems.append("--tls-cert and --tls-key go together")
    if config.tls_client_ca is not None and config.tls_cert is None:
        problems.append("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    if config.auth_token and config.auth_token_file is not None:
        problems.append("give --auth-token or --auth-token-file, not both")
    if config.shared_memory and not shared_memory_supported():
        problems.append("--shared-memory needs Linux's POSIX shared memory (/dev/shm), which this host lacks")
    if not (math.isfinite(config.trace_sample_ratio) and 0 <= config.trace_sample_ratio <= 1):
        problems.append(f"--trace-sample-ratio must be a number from 0 to 1, got {config.trace_sample_ratio}")
    if config.otlp_endpoint:
        problems.extend(_otlp_endpoint_problems(config.otlp_endpoint))
    return problems


def file_problems(config: ServiceConfig) -> list[str]:
    """What is wrong with the files ``config`` names, each with how to fix it: missing or unreadable, or TLS files
    that do not load as gRPC will load them (so a bad file is named here rather than failing the listen).

    The model directory is checked for what its ``backend`` serves: ``config.json`` and ``model.safetensors``
    for ``torch`` (a training run folder is answered with its ``best/`` and ``model/``), an export's
    ``manifest.json`` and graphs for ``onnx`` and ``tensorrt`` (an export without the source model files
    serves there on its manifest's word).
    """
    problems = []
    if config.backend == "torch":
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            unreadable = _unreadable(config.model_dir / name)
            if unreadable is not None:
                problems.append(f"--model-dir {config.model_dir}: {unreadable}")
                break
            if not (config.model_dir / name).is_file():
                problems.append(_missing_model_message(config.model_dir, name))
                break
    else:  # the onnx and tensorrt backends serve an export directory, which need not hold the source model
        from service.backends.manifest import ManifestError, read_manifest

        try:
            read_manifest(config.model_dir)  # its message says how to make one, from a model or a training run
        except ManifestError as error:
            problems.append(f"--backend {config.backend}: {error}")
    for flag, path in (
        ("tls-cert", config.tls_cert),
        ("tls-key", config.tls_key),
        ("tls-client-ca", config.tls_client_ca),
    ):
        if path is not None and (unreadable := _unreadable(path)) is not None:
            problems.append(f"--{flag} {path}: {unreadable}")
        elif path is not None and not path.is_file():
            problems.append(f"--{flag} {path}: {'a folder, not a file' if path.is_dir() else 'no such file'}")
    if not problems:
        problems += tls_file_problems(config.tls_cert, config.tls_key, config.tls_client_ca)
    return problems


def _otlp_endpoint_problems(endpoint: str) -> list[str]:
    """What is wrong with ``--otlp-endpoint`` ``endpoint``: not ``http(s)://host:port``, or no OpenTelemetry."""
    from urllib.parse import urlsplit

    from service.tracing import tracing_problem

    problems = []
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        problems.append(
            f"--otlp-endpoint must be http://host:port (a plain connection) or https://host:port (TLS), the "
            f"collector's OTLP/gRPC address (port 4317 by default), got {endpoint!r}"
        )
    missing = tracing_problem()
    if missing is not None:
        problems.append(f"--otlp-endpoint: {missing}")
    return problems


def _is_host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep) and bool(host) and port.isdigit() and int(port) < 65536


_WILDCARD_HOSTS = ("0.0.0.0", "[::]", "::", "*")


def _same_socket(first: str, second: str) -> bool:
    """Whether two ``host:port`` addresses would bind the same port on this machine: one non-zero port, and the
    same host or a wildcard host on either side (``0.0.0.0:P`` takes ``P`` on every address)."""
    first_host, _, first_port = first.rpartition(":")
    second_host, _, second_port = second.rpartition(":")
    if first_port != second_port or int(first_port) == 0:
        return False
    return first_host == second_host or first_host in _WILDCARD_HOSTS or second_host in _WILDCARD_HOSTS


def _unreadable(path: Path) -> str | None:
    """Why this process cannot read ``path`` (a folder on its way it may not enter, the file's own mode), or
    ``None`` when it can or when the file is missing (which the caller explains). A server started as another user
    than the one who wrote the model (a container's non-root user) meets this."""
    try:
        if not path.exists():
            return None
    except PermissionError as error:
        return f"cannot read {path}: {error.strerror} (a folder on its path may not be entered by user {os.getuid()})"
    if path.is_file() and not os.access(path, os.R_OK):
        return f"cannot read {path}: permission denied (user {os.getuid()} may not read it: check its mode)"
    return None


def _missing_model_message(model_dir: Path, missing: str) -> str:
    if model_dir == DEFAULT_MODEL_DIR:
        return (
            f"the default model is missing ({model_dir / missing} not found). Restore it with "
            "`git checkout -- service/models/default`, or train one with "
            "`python -m training.run --config tiny --out runs/tiny` and serve it with "
            "`python -m service --model-dir runs/tiny/model`."
        )
    hint = run_folder_hint(model_dir, "--model-dir")
    if hint:  # a training run: its models are RUN/best and RUN/model
        return f"{model_dir} is not a model directory ({missing} not found){hint}."
    return (
        f"{model_dir} is not a model directory ({missing} not found): point --model-dir (SLOTSTREAM_MODEL_DIR) "
        f"at a directory written by VideoSlotModel.save_pretrained, holding {CONFIG_FILE} and {WEIGHTS_FILE}."
    )


__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL_DIR",
    "DEFAULT_TRACE_SAMPLE_RATIO",
    "FRAME_FITS",
    "LOG_FORMATS",
    "MAX_BATCH_SIZE",
    "MAX_RESUME_HISTORY",
    "MAX_THREADS",
    "ONNX_GRAPH_OPTIMIZATIONS",
    "ConfigError",
    "config_problems",
    "file_problems",
    "flag_name",
]
