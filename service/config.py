"""``ServiceConfig``: every server setting, from CLI flags and ``SLOTSTREAM_*`` environment variables.

Each field ``some_name`` is set by the flag ``--some-name`` or the variable ``SLOTSTREAM_SOME_NAME``; a flag
wins over the variable, which wins over the default. The config is validated once, when it is built, and
every problem is reported together (:mod:`service.config_checks`); what a valid config still does against the
server is told at start-up (:mod:`service.config_warnings`). The flags and variables are read in
:mod:`service.config_sources`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.config_checks import (
    BACKENDS,
    DEFAULT_MODEL_DIR,
    DEFAULT_TRACE_SAMPLE_RATIO,
    FRAME_FITS,
    LOG_FORMATS,
    MAX_BATCH_SIZE,
    MAX_RESUME_HISTORY,
    MAX_THREADS,
    ONNX_GRAPH_OPTIMIZATIONS,
    ConfigError,
    config_problems,
    file_problems,
    flag_name,
)
from service.config_warnings import (
    MAX_ADMIN_CALLS,
    file_tokens,
    memory_warnings,
    security_warnings,
    tracing_warnings,
)
from service.engine import normalise_device
from service.grpc_limits import DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_MESSAGE_BYTES
from service.host import available_cores, memory_limit_bytes
from service.reply_budget import AUTO_REPLY_BUDGET_FRACTION, ReplyBudget

RAW_1080P_BYTES = 1920 * 1080 * 3
"""A raw 1080p RGB frame's bytes, which the default ``--max-message-bytes`` takes in one message."""


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of one server process. See the field help (``python -m service --help``) for each.

    :attr:`device` is stored as :func:`normalise_device` spells it (``CPU`` is ``cpu``), whatever source set it.

    Raises:
        ConfigError: at construction, when a setting is invalid (the message lists every problem).
    """

    listen: str = field(default="127.0.0.1:50051", metadata=_help("gRPC listen address host:port (port 0: any)"))
    model_dir: Path = field(
        default=DEFAULT_MODEL_DIR,
        metadata=_help(
            "model directory: config.json + model.safetensors for the torch backend, an export directory "
            "(python -m training.export) for onnx and tensorrt"
        ),
    )
    model_name: str = field(default="", metadata=_help("name clients use for the model (empty: the directory name)"))
    backend: str = field(default="torch", metadata=_help("inference backend", choices=BACKENDS))
    device: str = field(default="cpu", metadata=_help("device for the model, e.g. cpu or cuda:0"))
    max_streams: int = field(
        default=64,
        metadata=_help(
            "streams held at once (open + resumable); a new one takes the place of the stream detached longest, else "
            "is refused"
        ),
    )
    max_streams_per_client: int = field(
        default=0,
        metadata=_help(
            "streams one client address (IP) may hold at once, open or resumable, so that one client cannot take "
            "every stream (0: no limit; clients behind one proxy or NAT share its address; a resume is never "
            "refused for it; a new open at the limit takes the place of one of the client's own detached streams)"
        ),
    )
    max_calls: int = field(
        default=0,
        metadata=_help(
            "gRPC calls held at once, counted from their headers, besides Health/Check and Admin calls, which have "
            "caps of their own (0: --max-streams + 8); more are refused with RESOURCE_EXHAUSTED, so calls that hold "
            "no stream cannot pile up"
        ),
    )
    open_timeout_s: float = field(
        default=10.0, metadata=_help("seconds a stream call may take to send its open before it is ended (NOT_OPEN)")
    )
    idle_timeout_s: float = field(default=300.0, metadata=_help("default seconds without frames before reclaim"))
    max_idle_timeout_s: float = field(default=3600.0, metadata=_help("largest idle timeout a client may ask for"))
    max_resume_window_s: float = field(default=300.0, metadata=_help("largest resume window a client may ask for"))
    resume_history: int = field(default=32, metadata=_help("per-stream states kept for resuming at a past frame"))
    max_batch_size: int = field(
        default=16, metadata=_help("frames (of different streams) per model call; at most --max-streams take effect")
    )
    max_queue_delay_ms: float = field(default=2.0, metadata=_help("longest wait for a batch to fill"))
    model_instances: int = field(
        default=0,
        metadata=_help(
            "model calls run at once (0: auto = on a CPU, the cores (the cgroup CPU limit if lower than the "
            "affinity) / the threads of one call (--torch-threads, or --onnx-intra-op-threads for onnx), at most "
            "4; on a GPU 1)"
        ),
    )
    inline_model_max_ms: float = field(
        default=50.0,
        metadata=_help(
            "a lone stream's model call runs on the event-loop thread (no thread hand-offs) while its calls take "
            "less than this; CPU devices only (0: never)"
        ),
    )
    max_pending_frames: int = field(default=4, metadata=_help("frames a stream may queue before flow control"))
    max_buffered_reply_bytes: int = field(
        default=64 * 1024 * 1024,
        metadata=_help(
            "finished replies a stream may hold while its client is not reading, in bytes of its reply-size bound "
            "(at least one reply, at most 64); beyond it the stream stops taking frames until the client reads"
        ),
    )
    max_total_buffered_reply_bytes: int = field(
        default=0,
        metadata=_help(
            "finished replies all streams together may hold while their clients are not reading, in bytes of their "
            "reply-size bounds, with the two gRPC holds per stream; a new stream without room for a window of one "
            "reply is refused TOO_MANY_STREAMS (0: auto = a quarter of the memory limit: the cgroup limit, else the "
            "machine's memory; else at least 3 x --max-message-bytes)"
        ),
    )
    max_message_bytes: int = field(
        default=DEFAULT_MAX_MESSAGE_BYTES,
        metadata=_help(
            "largest gRPC message, each way (a raw 1080p frame is 6,220,800 B; opens whose replies could exceed "
            "it are refused)"
        ),
    )
    frame_fit: str = field(
        default="auto",
        metadata=_help(
            "how frames are fitted to the model's input size for streams that do not choose one "
            "(StreamOptions.frame_fit): auto (the fit the model was trained with, as its config.json or export "
            "manifest records it; stretch for a model that records none), stretch (resize whole), crop (centre "
            "crop to the model's aspect ratio, as training's --frame-fit crop; masks are 255 outside it) or pad "
            "(centre on a mid-grey canvas of the model's aspect ratio)",
            choices=FRAME_FITS,
        ),
    )
    max_image_pixels: int = field(
        default=DEFAULT_MAX_IMAGE_PIXELS,
        metadata=_help(
            "largest image (width x height) accepted, of any encoding (a raw frame must also fit "
            "--max-message-bytes: raw 4K needs 25 MB, or send JPEG/PNG); also the largest mask size "
            "(mask_height x mask_width) a stream may ask for"
        ),
    )
    tls_cert: Path | None = field(default=None, metadata=_help("PEM server certificate (enables TLS)"))
    tls_key: Path | None = field(default=None, metadata=_help("PEM private key of --tls-cert"))
    tls_client_ca: Path | None = field(default=None, metadata=_help("PEM CA for client certificates (mutual TLS)"))
    auth_token: str = field(default="", repr=False, metadata=_help("bearer token clients must send (prefer a file)"))
    auth_token_file: Path | None = field(
        default=None,
        metadata=_help("file holding the bearer tokens, one per line (any is accepted); re-read when it changes"),
    )
    admin_token_file: Path | None = field(
        default=None,
        metadata=_help(
            "file holding the admin tokens, one per line, that the Admin service's calls must present (ListStreams, "
            "GetStreamStats, EndStream, ReloadModel: python -m service.client streams, end-stream, reload); re-read "
            "when it changes; unset: the Admin service is off"
        ),
    )
    metrics_listen: str = field(
        default="127.0.0.1:9464", metadata=_help("Prometheus /metrics address host:port; empty: off")
    )
    shared_memory: bool = field(
        default=False,
        metadata=_help(
            "read frames from POSIX shared memory (Image.shared_memory) for clients on this host, which connect over "
            "loopback and write frames to /dev/shm/slotstream_*: spares the copy of large frames "
            "through gRPC (Linux only)"
        ),
    )
    otlp_endpoint: str = field(
        default="",
        metadata=_help(
            "OpenTelemetry: export a span per traced frame to this OTLP/gRPC collector, http://host:port (plain) or "
            "https://host:port (TLS); the OTEL_EXPORTER_OTLP_* variables give the exporter's other settings; "
            "empty: no tracing"
        ),
    )
    trace_sample_ratio: float = field(
        default=DEFAULT_TRACE_SAMPLE_RATIO,
        metadata=_help(
            "with --otlp-endpoint: the share (0-1) of frames traced among those that carry no trace context; a "
            "frame whose traceparent is sampled is always traced, one whose traceparent is not, never"
        ),
    )
    grace_period_s: float = field(
        default=20.0,
        metadata=_help(
            "shutdown (SIGTERM): the longest drain, in seconds. Readiness turns NOT_SERVING and new streams are "
            "refused at once; each open stream answers the frames it accepted, is sent its hand-off state and ends "
            "(SHUTTING_DOWN); a stream detached from a dropped connection waits up to 5 s of it for its client to "
            "resume and collect the state. Streams still draining at the end are cut off (a hand-off not yet sent "
            "is lost); the gRPC server then stops (at most 2 s) and a model call still running gets what is left "
            "(at least 1 s) before it is abandoned (exit status 1)"
        ),
    )
    model_stall_timeout_s: float = field(
        default=60.0,
        metadata=_help("liveness: a model call running longer than this marks the server not alive (0: never)"),
    )
    model_failure_limit: int = field(
        default=20,
        metadata=_help(
            "liveness: this many failed model calls in a row (no success in between; a failed batch and each "
            "frame's retry count apart) mark the server not alive and not ready until a call succeeds (0: never)"
        ),
    )
    torch_threads: int = field(
        default=1,
        metadata=_help(
            "torch intra-op threads: the torch backend's model and every backend's mask post-processing (0: torch's "
            "default, one per core it sees; >1 helps only big CPU models)"
        ),
    )
    decode_threads: int = field(default=2, metadata=_help("threads decoding images"))
    jpeg_damage_check: bool = field(
        default=True,
        metadata=_help(
            "refuse JPEG frames whose image data libjpeg finds damaged (a scan cut short, a bad Huffman code), at "
            "the cost of a second, reduced-scale libjpeg pass over each JPEG (about as long as the decode itself)"
        ),
    )
    warmup: bool = field(
        default=True, metadata=_help("run the model at batch size 1 and the largest batch size before serving")
    )
    log_level: str = field(default="INFO", metadata=_help("logging level"))
    log_format: str = field(default="json", metadata=_help("log line format", choices=LOG_FORMATS))
    # Backend settings: each applies to the backends named in its help and is ignored by the others.
    onnx_intra_op_threads: int = field(
        default=1, metadata=_help("onnx backend: ONNX Runtime threads inside one operator (0: one per core)")
    )
    onnx_inter_op_threads: int = field(
        default=1,
        metadata=_help(
            "onnx backend: ONNX Runtime threads running independent operators (above 1: parallel execution)"
        ),
    )
    onnx_graph_optimization: str = field(
        default="all", metadata=_help("onnx backend: graph optimisation level", choices=ONNX_GRAPH_OPTIMIZATIONS)
    )
    tensorrt_fp16: bool | None = field(
        default=None,
        metadata=_help("tensorrt backend and onnx on --device tensorrt: fp16 engines (unset: the export's precision)"),
    )
    tensorrt_cache_dir: Path | None = field(
        default=None,
        metadata=_help(
            "tensorrt backend and onnx on --device tensorrt: writable engine cache (unset: MODEL/tensorrt)",
        ),
    )
    tensorrt_cuda_graphs: bool = field(
        default=False,
        metadata=_help("tensorrt backend: capture one CUDA graph per batch bucket (powers of two and the maximum)"),
    )
    tensorrt_workspace_mb: int = field(default=1024, metadata=_help("tensorrt backend: builder workspace limit"))

    def __post_init__(self) -> None:
        # One spelling for every consumer (the backends, the instance count, the inline path): ``CPU`` and
        # `` cuda:0 `` are ``cpu`` and ``cuda:0``. A frozen dataclass is set through object.__setattr__.
        object.__setattr__(self, "device", normalise_device(self.device))
        problems = config_problems(self)
        if problems:
            raise ConfigError("invalid service configuration:\n  " + "\n  ".join(problems))

    # -- derived values ---------------------------------------------------------------------------------

    @property
    def resolved_model_name(self) -> str:
        """The model's name: :attr:`model_name`, or the model directory's name."""
        return self.model_name or self.model_dir.name

    @property
    def resolved_max_calls(self) -> int:
        """:attr:`max_calls`, or the automatic choice: one call per stream and 8 more (``Describe``, and a
        reconnect's new call while the old one is torn down). Each may be receiving a message of up to
        :attr:`max_message_bytes` (an open may carry a hand-off state), which :meth:`memory_warnings` counts."""
        return self.max_calls or self.max_streams + 8

    @property
    def resolved_max_batch_size(self) -> int:
        """:attr:`max_batch_size`, lowered to :attr:`max_streams`: a batch holds at most one frame of each stream, so
        the batcher never forms, nor the warm-up runs, a batch that cannot occur. The engine is still loaded at
        :attr:`max_batch_size`, the size an export's TensorRT engines were built and checked at."""
        return min(self.max_batch_size, self.max_streams)

    def resolved_model_instances(self, cores: int | None = None) -> int:
        """:attr:`model_instances`, or the automatic choice: on a CPU one per ``cores // threads per call``, at
        most 4; on a GPU one.

        Args:
            cores: CPU cores the process may use; ``None``: :func:`~service.host.available_cores`.
        """
        if self.model_instances > 0:
            return self.model_instances
        if not self.device.startswith("cpu"):
            return 1
        cores = available_cores() if cores is None else cores
        threads = self.onnx_intra_op_threads if self.backend == "onnx" else self.torch_threads
        per_call = threads if threads > 0 else cores  # 0: the backend uses every core
        return max(1, min(4, cores // per_call))

    def reply_budget_bytes(self, memory_limit: int | None = None) -> int:
        """:attr:`max_total_buffered_reply_bytes`, or the automatic budget: a quarter of ``memory_limit`` (``None``:
        :func:`~service.host.memory_limit_bytes`), or 16 GiB when no limit can be read.

        The automatic budget leaves room for at least one stream whose replies are as large as they may be
        (:meth:`min_reply_budget_bytes`)."""
        if self.max_total_buffered_reply_bytes > 0:
            return self.max_total_buffered_reply_bytes
        limit = memory_limit_bytes() if memory_limit is None else memory_limit
        budget = 16 * 1024**3 if limit is None else limit // AUTO_REPLY_BUDGET_FRACTION
        return max(budget, self.min_reply_budget_bytes())

    def min_reply_budget_bytes(self) -> int:
        """The smallest reply budget that admits a stream whose replies are as large as :attr:`max_message_bytes`
        allows: a window of one such reply plus the ones gRPC holds (:class:`~service.reply_budget.ReplyBudget`)."""
        return ReplyBudget.stream_bytes(self.max_message_bytes, 1)

    def memory_warnings(self, memory_limit: int | None = None) -> list[str]:
        """:func:`~service.config_warnings.memory_warnings` of this config."""
        return memory_warnings(self, memory_limit)

    def inline_below_s(self) -> float:
        """How short a lone model call must be to run on the event-loop thread (0: never). Off on GPUs, where
        the engine's CUDA context and streams belong to its model thread."""
        return self.inline_model_max_ms / 1e3 if self.device.startswith("cpu") else 0.0

    def backend_options(self) -> dict[str, Any]:
        """The settings of :attr:`backend`, as keyword arguments of its options class (``OnnxOptions`` or
        ``TensorRTOptions``); empty for ``torch``, whose setting (``torch_threads``) the server applies."""
        fields = _BACKEND_OPTION_FIELDS.get(self.backend, {})
        return {option: getattr(self, name) for option, name in fields.items()}

    def tracing_warnings(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """:func:`~service.config_warnings.tracing_warnings` of this config."""
        return tracing_warnings(self, environ)

    def security_warnings(self) -> list[str]:
        """:func:`~service.config_warnings.security_warnings` of this config."""
        return security_warnings(self)

    def check_files(self) -> None:
        """Check the files this config names (:func:`~service.config_checks.file_problems`).

        Raises:
            ConfigError: a file or directory is missing or unreadable, or a TLS file is not what its flag needs.
        """
        problems = file_problems(self)
        if problems:
            raise ConfigError("\n".join(problems))

    def bearer_tokens(self) -> tuple[str, ...]:
        """The tokens clients may present (any of them), or none when no token is required: ``--auth-token``, or
        the lines of ``--auth-token-file`` as they are now (the server takes the file up again when it changes,
        see :class:`service.tokens.TokenFile`).

        Raises:
            ConfigError: the token file cannot be read, holds no token, or holds a line no client can send (a
                character outside printable ASCII ``!`` .. ``~``: :func:`service.tokens.read_token_lines`), naming
                the line, never the token.
        """
        if self.auth_token_file is None:
            return (self.auth_token,) if self.auth_token else ()
        return file_tokens("auth-token-file", self.auth_token_file)

    def admin_tokens(self) -> tuple[str, ...]:
        """The tokens ``Admin`` calls may present (any of them), as ``--admin-token-file`` holds them now; none when
        it is unset (the Admin service is off).

        Raises:
            ConfigError: as :meth:`bearer_tokens`, for ``--admin-token-file``.
        """
        return () if self.admin_token_file is None else file_tokens("admin-token-file", self.admin_token_file)

    # -- construction -------------------------------------------------------------------------------------

    @classmethod
    def from_sources(
        cls,
        argv: Sequence[str] | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        notes: list[str] | None = None,
    ) -> ServiceConfig:
        """Build the config from command-line flags over ``SLOTSTREAM_*`` variables over the defaults.

        Args:
            argv: flags (without the program name); ``None`` reads ``sys.argv``.
            environ: environment; ``None`` reads ``os.environ``.
            notes: where to append warnings about the sources (a ``SLOTSTREAM_*`` variable that looks like a
                misspelt setting), for the caller to log once logging is configured; ``None``: log them now. They
                are appended before anything is raised.

        Raises:
            ConfigError: a value does not parse or the result is invalid.
            SystemExit: ``--help``, or a flag argparse rejects.
        """
        # Imported here: service.config_sources makes the flags and variables from this class's fields.
        from service.config_sources import build_parser, environ_values

        environ = os.environ if environ is None else environ
        values = environ_values(environ, notes)
        parsed = build_parser().parse_args(argv)
        values.update({name: value for name, value in vars(parsed).items() if value is not None})
        if "auth_token" in values and not str(values["auth_token"]).strip():
            # Given, but empty: an unset shell variable (--auth-token "$TOKEN") would leave the server open to all.
            raise ConfigError(
                "--auth-token (or SLOTSTREAM_AUTH_TOKEN) is set but empty, which would turn authentication off: give "
                "the token, or leave the setting out to serve without one"
            )
        return cls(**values)


_BACKEND_OPTION_FIELDS: dict[str, dict[str, str]] = {
    "onnx": {
        "intra_op_threads": "onnx_intra_op_threads",
        "inter_op_threads": "onnx_inter_op_threads",
        "graph_optimization": "onnx_graph_optimization",
        "tensorrt_fp16": "tensorrt_fp16",
        "tensorrt_cache_dir": "tensorrt_cache_dir",
    },
    "tensorrt": {
        "fp16": "tensorrt_fp16",
        "cache_dir": "tensorrt_cache_dir",
        "cuda_graphs": "tensorrt_cuda_graphs",
        "workspace_mb": "tensorrt_workspace_mb",
    },
}
"""Backend -> its options class's keyword -> the ServiceConfig field that sets it."""


def parse_bool(raw: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case, surrounding blanks ignored).

    Raises:
        ValueError: anything else.
    """
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL_DIR",
    "DEFAULT_TRACE_SAMPLE_RATIO",
    "FRAME_FITS",
    "LOG_FORMATS",
    "MAX_ADMIN_CALLS",
    "MAX_BATCH_SIZE",
    "MAX_RESUME_HISTORY",
    "MAX_THREADS",
    "ONNX_GRAPH_OPTIMIZATIONS",
    "RAW_1080P_BYTES",
    "ConfigError",
    "ServiceConfig",
    "flag_name",
    "parse_bool",
]
