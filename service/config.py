"""``ServiceConfig``: every server setting, from CLI flags and ``SLOTSTREAM_*`` environment variables.

Each field ``some_name`` is set by the flag ``--some-name`` or the variable ``SLOTSTREAM_SOME_NAME``; a flag
wins over the variable, which wins over the default. The config is validated once, when it is built, and
every problem is reported together. The flags and variables are read in :mod:`service.config_sources`.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plugins.frame_fit import FRAME_FITS as SERVED_FITS
from plugins.model_files import CONFIG_FILE, WEIGHTS_FILE, run_folder_hint
from service.engine import normalise_device
from service.grpc_limits import MAX_GRPC_MESSAGE_BYTES
from service.host import available_cores, decodable_pixels, memory_limit_bytes
from service.reply_budget import AUTO_REPLY_BUDGET_FRACTION, ReplyBudget
from service.shared_memory import shared_memory_supported
from service.tls_files import tls_file_problems
from service.tokens import MIN_TOKEN_CHARS, TokenFileError, read_token_lines, short_token_warning

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models" / "default"
RAW_1080P_BYTES = 1920 * 1080 * 3
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


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem and the flag that sets it."""


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


MAX_ADMIN_CALLS = 4
"""``Admin`` calls held at once (operators' tools: a listing, a ``--watch``, an ``EndStream``, a reload), counted
apart from ``--max-calls`` (:class:`~service.call_limit.CallLimitInterceptor`)."""


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
        default=16 * 1024 * 1024,
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
        default=4096 * 4096,
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
        problems = self._problems()
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
        """What in this configuration lets clients take more memory than the server may use: the messages being
        received by every call at once (:attr:`resolved_max_calls`, and :data:`MAX_ADMIN_CALLS` with the Admin
        service on, x ``--max-message-bytes``: a stream's frame, or a call's open with a hand-off state) plus the
        replies they may hold (:meth:`reply_budget_bytes`) beyond half of ``memory_limit`` (``None``:
        :func:`~service.host.memory_limit_bytes`; the other half is for the server itself, its model, decoding
        and gRPC's buffers). Empty when no limit can be read."""
        limit = memory_limit_bytes() if memory_limit is None else memory_limit
        if limit is None:
            return []
        admin_calls = MAX_ADMIN_CALLS if self.admin_token_file is not None else 0
        calls = self.resolved_max_calls + admin_calls
        receiving = calls * self.max_message_bytes
        replies = self.reply_budget_bytes(limit)
        if receiving + replies <= limit // 2:
            return []
        mib = 1024 * 1024
        return [
            f"{calls} calls receiving messages of up to {self.max_message_bytes // mib} MiB (--max-calls, by "
            f"default --max-streams + 8{f', and {admin_calls} Admin calls' if admin_calls else ''}, x "
            f"--max-message-bytes: {receiving // mib} MiB) and holding "
            f"{replies // mib} MiB of replies (--max-total-buffered-reply-bytes) could use more than half of the "
            f"{limit // mib} MiB this server may use, and an out-of-memory kill ends every stream: lower "
            "--max-message-bytes to the largest frame your clients send, --max-streams or --max-calls, or the reply "
            "budget (deploy/README.md, Memory)"
        ]

    def inline_below_s(self) -> float:
        """How short a lone model call must be to run on the event-loop thread (0: never). Off on GPUs, where
        the engine's CUDA context and streams belong to its model thread."""
        return self.inline_model_max_ms / 1e3 if self.device.startswith("cpu") else 0.0

    def backend_options(self) -> dict[str, Any]:
        """The settings of :attr:`backend`, as keyword arguments of its options class (``OnnxOptions`` or
        ``TensorRTOptions``); empty for ``torch``, whose setting (``torch_threads``) the server applies."""
        fields = _BACKEND_OPTION_FIELDS.get(self.backend, {})
        return {option: getattr(self, name) for option, name in fields.items()}

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
        return _file_tokens("auth-token-file", self.auth_token_file)

    def admin_tokens(self) -> tuple[str, ...]:
        """The tokens ``Admin`` calls may present (any of them), as ``--admin-token-file`` holds them now; none when
        it is unset (the Admin service is off).

        Raises:
            ConfigError: as :meth:`bearer_tokens`, for ``--admin-token-file``.
        """
        return () if self.admin_token_file is None else _file_tokens("admin-token-file", self.admin_token_file)

    def tracing_warnings(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """Tracing settings that trace nothing: a ``--trace-sample-ratio`` set without ``--otlp-endpoint``, or
        OpenTelemetry's standard endpoint variable (in ``environ``, default ``os.environ``), which this server does
        not take for its endpoint: tracing starts with ``--otlp-endpoint`` alone."""
        if self.otlp_endpoint:
            return []
        environ = os.environ if environ is None else environ
        warnings = []
        if self.trace_sample_ratio != DEFAULT_TRACE_SAMPLE_RATIO:
            warnings.append(
                f"--trace-sample-ratio {self.trace_sample_ratio:g} is set, but no frame is traced without "
                "--otlp-endpoint"
            )
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            if environ.get(name):
                warnings.append(
                    f"{name} is set, but this server traces frames only with --otlp-endpoint "
                    "(SLOTSTREAM_OTLP_ENDPOINT): no frame is traced"
                )
        return warnings

    def security_warnings(self) -> list[str]:
        """What in this configuration exposes a bearer token (a client's, ``--auth-token``/``--auth-token-file``, or
        an operator's, ``--admin-token-file``): a token required over plaintext on an address other machines reach
        (it crosses the network readable), a token file every user of the machine may read, a token shorter than
        :data:`~service.tokens.MIN_TOKEN_CHARS` characters (it may be guessed), or an admin token that is also a
        client token (every client holding it may list and end the streams and reload the model)."""
        files = (("--auth-token-file", self.auth_token_file), ("--admin-token-file", self.admin_token_file))
        token_files = [(flag, path) for flag, path in files if path is not None]
        if not (self.auth_token or token_files):
            return []
        warnings = []
        host = self.listen.rpartition(":")[0].strip("[]")
        if self.tls_cert is None and host not in ("127.0.0.1", "::1", "localhost"):
            who = "clients" if self.auth_token or self.auth_token_file else "Admin calls"
            warnings.append(
                f"{who} must send a bearer token, but TLS is off on --listen {self.listen}: the token crosses the "
                "network in plain text; set --tls-cert and --tls-key, or terminate TLS in front of the server"
            )
        for flag, path in token_files:
            warnings += _token_file_warnings(flag, path)
        if self.auth_token and len(self.auth_token) < MIN_TOKEN_CHARS:
            warnings.append(
                f"--auth-token is {len(self.auth_token)} characters, shorter than {MIN_TOKEN_CHARS} (under about 128 "
                "bits), a token that may be guessed; use a long random one (`openssl rand -base64 32` makes 44 "
                "characters)"
            )
        if self.admin_token_file is not None and (self.auth_token or self.auth_token_file):
            try:
                shared = set(self.admin_tokens()) & set(self.bearer_tokens())
            except ConfigError:
                shared = set()  # the start-up reading reports the file
            if shared:
                warnings.append(
                    f"--admin-token-file {self.admin_token_file} holds {len(shared)} token(s) that clients may also "
                    "present (the client tokens): every client holding one may list the streams and their peers, "
                    "end any stream and reload the model; give operators tokens of their own"
                )
        return warnings

    def check_files(self) -> None:
        """Check that the files the config names exist, and that the TLS files load, with a message that says how to
        fix it.

        The model directory is checked for what :attr:`backend` serves: ``config.json`` and ``model.safetensors``
        for ``torch`` (a training run folder is answered with its ``best/`` and ``model/``), an export's
        ``manifest.json`` and graphs for ``onnx`` and ``tensorrt`` (an export without the source model files
        serves there on its manifest's word).

        Raises:
            ConfigError: a file or directory is missing, or a TLS file is not what its flag needs.
        """
        problems = []
        if self.backend == "torch":
            for name in (CONFIG_FILE, WEIGHTS_FILE):
                unreadable = _unreadable(self.model_dir / name)
                if unreadable is not None:
                    problems.append(f"--model-dir {self.model_dir}: {unreadable}")
                    break
                if not (self.model_dir / name).is_file():
                    problems.append(_missing_model_message(self.model_dir, name))
                    break
        else:  # the onnx and tensorrt backends serve an export directory, which need not hold the source model
            from service.backends.manifest import ManifestError, read_manifest

            try:
                read_manifest(self.model_dir)  # its message says how to make one, from a model or a training run
            except ManifestError as error:
                problems.append(f"--backend {self.backend}: {error}")
        for flag, path in (
            ("tls-cert", self.tls_cert),
            ("tls-key", self.tls_key),
            ("tls-client-ca", self.tls_client_ca),
        ):
            if path is not None and (unreadable := _unreadable(path)) is not None:
                problems.append(f"--{flag} {path}: {unreadable}")
            elif path is not None and not path.is_file():
                problems.append(f"--{flag} {path}: {'a folder, not a file' if path.is_dir() else 'no such file'}")
        if not problems:
            problems += self._tls_problems()
        if problems:
            raise ConfigError("\n".join(problems))

    def _tls_problems(self) -> list[str]:
        """Load the TLS files as gRPC will, so a bad file is named here rather than failing the listen."""
        return tls_file_problems(self.tls_cert, self.tls_key, self.tls_client_ca)

    # -- validation ---------------------------------------------------------------------------------------

    def _problems(self) -> list[str]:
        problems = []
        for name in ("listen", "metrics_listen"):
            value = getattr(self, name)
            if (value or name == "listen") and not _is_host_port(value):
                problems.append(f"--{flag_name(name)} must be host:port, got {value!r}")
        both = _is_host_port(self.listen) and _is_host_port(self.metrics_listen)
        if both and _same_socket(self.listen, self.metrics_listen):
            problems.append(
                f"--metrics-listen {self.metrics_listen} takes the port of --listen {self.listen}: the metrics need a "
                "port of their own"
            )
        positive = (
            "max_streams",
            "resume_history",
            "max_batch_size",
            "max_pending_frames",
            "max_buffered_reply_bytes",
            "decode_threads",
        )
        problems += [
            f"--{flag_name(n)} must be >= 1, got {getattr(self, n)}" for n in positive if getattr(self, n) < 1
        ]
        budget, smallest = self.max_total_buffered_reply_bytes, self.min_reply_budget_bytes()
        if budget < 0 or 0 < budget < smallest:
            problems.append(
                f"--max-total-buffered-reply-bytes must be 0 (auto) or at least {smallest} (3 replies of "
                f"--max-message-bytes: one stream's window of one and the two gRPC holds), got {budget}"
            )
        if self.max_calls < 0:
            problems.append(f"--max-calls must be >= 0 (0: automatic), got {self.max_calls}")
        if 0 < self.max_calls < self.max_streams:
            problems.append(
                f"--max-calls {self.max_calls} is below --max-streams {self.max_streams}: each stream is a call"
            )
        if not (math.isfinite(self.open_timeout_s) and self.open_timeout_s > 0):
            problems.append(f"--open-timeout-s must be a number > 0, got {self.open_timeout_s}")
        if self.max_streams_per_client < 0:
            problems.append(f"--max-streams-per-client must be >= 0 (0: no limit), got {self.max_streams_per_client}")
        non_negative_durations = (
            "max_resume_window_s",
            "max_queue_delay_ms",
            "inline_model_max_ms",
            "grace_period_s",
            "model_stall_timeout_s",
        )
        # NaN compares false with everything, so the range checks below cannot catch it.
        problems += [
            f"--{flag_name(n)} must be a finite number, got {getattr(self, n)}"
            for n in ("idle_timeout_s", "max_idle_timeout_s", *non_negative_durations)
            if not math.isfinite(getattr(self, n))
        ]
        if self.idle_timeout_s <= 0 or self.max_idle_timeout_s < self.idle_timeout_s:
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
            f"--{flag_name(n)} must be >= 0, got {getattr(self, n)}" for n in non_negative if getattr(self, n) < 0
        ]
        largest = {
            "max_batch_size": (MAX_BATCH_SIZE, "the model is warmed up at it, and each frame of it is a float32 copy"),
            "resume_history": (MAX_RESUME_HISTORY, "five minutes at 120 frames/s; each entry keeps a stream state"),
        }
        problems += [
            f"--{flag_name(n)} must be at most {most} ({why}), got {getattr(self, n)}"
            for n, (most, why) in largest.items()
            if getattr(self, n) > most
        ]
        thread_counts = ("torch_threads", "onnx_intra_op_threads", "onnx_inter_op_threads", "decode_threads")
        problems += [
            f"--{flag_name(n)} must be at most {MAX_THREADS} (a thread team that large ends the process), got "
            f"{getattr(self, n)}"
            for n in thread_counts
            if getattr(self, n) > MAX_THREADS
        ]
        if not 1024 * 1024 <= self.max_message_bytes <= MAX_GRPC_MESSAGE_BYTES:
            problems.append(
                f"--max-message-bytes must be between 1 MiB and {MAX_GRPC_MESSAGE_BYTES} (gRPC's limit), "
                f"got {self.max_message_bytes}"
            )
        largest_image = decodable_pixels()
        if not 1 <= self.max_image_pixels <= largest_image:
            problems.append(
                f"--max-image-pixels must be between 1 and {largest_image} (beyond it the image decoder refuses "
                f"images as decompression bombs), got {self.max_image_pixels}"
            )
        if self.backend not in BACKENDS:
            problems.append(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.onnx_graph_optimization not in ONNX_GRAPH_OPTIMIZATIONS:
            choices = ", ".join(ONNX_GRAPH_OPTIMIZATIONS)
            problems.append(
                f"--onnx-graph-optimization must be one of {choices}, got {self.onnx_graph_optimization!r}"
            )
        if self.tensorrt_workspace_mb < 1:
            problems.append(f"--tensorrt-workspace-mb must be >= 1, got {self.tensorrt_workspace_mb}")
        if self.frame_fit not in FRAME_FITS:
            problems.append(f"--frame-fit must be one of {', '.join(FRAME_FITS)}, got {self.frame_fit!r}")
        if self.log_format not in LOG_FORMATS:
            problems.append(f"--log-format must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        if not isinstance(logging.getLevelName(self.log_level.upper()), int):
            problems.append(f"--log-level must be a logging level such as INFO or DEBUG, got {self.log_level!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            problems.append("--tls-cert and --tls-key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            problems.append("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        if self.auth_token and self.auth_token_file is not None:
            problems.append("give --auth-token or --auth-token-file, not both")
        if self.shared_memory and not shared_memory_supported():
            problems.append("--shared-memory needs Linux's POSIX shared memory (/dev/shm), which this host lacks")
        if not (math.isfinite(self.trace_sample_ratio) and 0 <= self.trace_sample_ratio <= 1):
            problems.append(f"--trace-sample-ratio must be a number from 0 to 1, got {self.trace_sample_ratio}")
        if self.otlp_endpoint:
            problems.extend(_otlp_endpoint_problems(self.otlp_endpoint))
        return problems

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


def flag_name(name: str) -> str:
    """The flag of the field ``name``, without its dashes: ``max_streams`` is ``max-streams``."""
    return name.replace("_", "-")


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


def _file_tokens(flag: str, path: Path) -> tuple[str, ...]:
    """The tokens of the token file ``path`` given as ``--flag`` (:func:`service.tokens.read_token_lines`).

    Raises:
        ConfigError: the file cannot be read, holds no token, or holds a line no client can send, naming the flag,
            the file and the line, never the token.
    """
    try:
        return tuple(token for _, token in read_token_lines(path))
    except OSError as error:
        raise ConfigError(f"--{flag} {path}: {error.strerror}") from error
    except TokenFileError as error:
        if error.line is None:
            raise ConfigError(f"--{flag} {path} is empty: it holds no token") from None
        raise ConfigError(f"--{flag} {error}") from None


def _token_file_warnings(flag: str, path: Path) -> list[str]:
    """The warnings about the token file ``path`` of ``flag``: readable by every user of the machine, or holding
    tokens shorter than :data:`~service.tokens.MIN_TOKEN_CHARS` characters. A file that cannot be read gets none
    (the start-up reading reports it)."""
    warnings = []
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = 0
    if mode & stat.S_IROTH:
        warnings.append(
            f"{flag} {path} can be read by every user of this machine (mode {stat.S_IMODE(mode):o}): make it readable "
            "by the server's user alone (chmod 600)"
        )
    try:
        lines = read_token_lines(path)
    except (OSError, TokenFileError):
        lines = ()
    if (short := short_token_warning(f"{flag} {path}", lines)) is not None:
        warnings.append(short)
    return warnings
