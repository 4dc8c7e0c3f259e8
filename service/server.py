"""The server process: wiring, startup (load, listen, warm up, then SERVING) and graceful shutdown.

Startup order: load the engine; listen with health ``NOT_SERVING`` (opens answer UNAVAILABLE); warm the
model up (batch size 1 and the largest); only then report ``SERVING``. Shutdown (SIGTERM): readiness (the health
services ``""`` and :data:`SERVICE_NAME`) flips to ``NOT_SERVING`` at once while liveness (:data:`LIVENESS_SERVICE`)
keeps its status through the drain (a probe must not restart a pod that is handing its streams off), new opens
get UNAVAILABLE, every stream answers the frames it has accepted, sends its hand-off state and ends with
UNAVAILABLE so the client reconnects elsewhere. A stream detached from a dropped connection is kept for up to
``DETACHED_WAIT_S``: its client may resume it during the drain, which hands its state off the same way. The drain
ends when no stream is left, or after the grace period, when whatever is left is cancelled and freed; the gRPC
server then gets at most twice :data:`GRPC_STOP_S` to stop (connections of clients that do not read are abandoned),
and with tracing on the last frame spans go to the collector (at most :data:`TRACE_FLUSH_S`). A shutdown before
``SERVING`` abandons the model's warm-up instead of waiting for it. A second SIGTERM or SIGINT ends the drain at once
(:meth:`Server.hurry`). The process around a server, its signals and exit status, is :mod:`service.process`; the
``settings`` log line :mod:`service.server_settings`, the gRPC options :mod:`service.grpc_options`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.admin import ADMIN_METHODS, ADMIN_TOKEN_MISPLACED, AdminAccessInterceptor, AdminServicer
from service.auth import EXEMPT_PREFIXES, BearerTokenInterceptor, RefusalReads
from service.call_limit import CallLimitInterceptor
from service.config import ServiceConfig
from service.connection import StreamConnection
from service.engine import Engine, load_engine
from service.errors import ErrorCode, StreamAbort
from service.generated import load_open_inference, pb, pb_grpc
from service.grpc_options import server_options
from service.host import memory_limit_bytes
from service.logs import quiet_client_departures
from service.malformed_requests import MalformedRequestInterceptor
from service.metrics import Metrics
from service.model_versions import ModelVersions
from service.open_inference import OPEN_INFERENCE_SERVICE, OpenInferenceServicer, ServerHealth
from service.ports import ListenError, check_listen_address
from service.runner import ModelRunner
from service.server_settings import ListeningAt, effective_settings
from service.servicer import PerceptionServicer
from service.session_limits import SessionLimits
from service.sessions import SessionManager
from service.tls import ReloadingServerCredentials
from service.tokens import TokenFile
from service.tracing import FrameTracing
from service.types import FrameFit, ReloadOutcome
from service.watchdog import ModelFailureMonitor, ModelWatchdog

SERVICE_NAME = "slotstream.v1.Perception"
LIVENESS_SERVICE = "slotstream.v1.Liveness"
"""Health service name for liveness probes: SERVING while the process listens, a shutdown's drain included,
NOT_SERVING while a model call has run longer than ``--model-stall-timeout-s`` or while the last
``--model-failure-limit`` model calls all failed (the empty name and :data:`SERVICE_NAME` are readiness, see
:data:`READINESS_SERVICES`). From the start of a shutdown it keeps the status it had."""
READINESS_SERVICES = ("", SERVICE_NAME)
"""Health service names for readiness: SERVING from the end of warm-up until a shutdown begins, while the model is
neither stalled nor failing."""
EngineFactory = Callable[[ServiceConfig], Engine]

_log = logging.getLogger(__name__)

GRPC_STOP_S = 1.0
"""Once the drain has ended, calls still running (a reflection stream, say) get what is left of the grace period,
up to this, before they are cancelled, and their connections up to this again to close. gRPC's own stop waits for
every connection to close, which for a client that does not read (a frozen process with replies queued for it)
lasts until the connection's ping times out, about 5 s (measured): such connections are abandoned instead."""

TRACE_FLUSH_S = 5.0
"""Longest a stop waits for the frame spans still batched to reach the collector (``--otlp-endpoint``), once the
model has stopped: what is left of the grace period, at least :data:`TRACE_FLUSH_LEAST_S`, at most this. Spans the
collector has not taken by then may be lost."""
TRACE_FLUSH_LEAST_S = 1.0
"""Shortest wait for the last frame spans, when the drain used the whole grace period."""

DETACHED_WAIT_S = 5.0
"""Longest a drain waits for clients to resume streams detached from dropped connections and collect their
hand-offs (within the grace period). Behind a Kubernetes Service a draining pod receives no new connections, so a
longer wait would mostly delay every shutdown on account of clients that crashed."""


def default_engine_factory(config: ServiceConfig) -> Engine:
    """Load ``config.model_dir`` with ``config.backend`` (what :class:`Server` uses unless told otherwise).

    ``config.torch_threads`` (when > 0) sets torch's threads for every backend: the masks are post-processed with
    torch whatever runs the model, and torch's default (one thread per core it sees, not the container's CPU quota)
    would start a team the size of the node for each of them."""
    if config.torch_threads > 0:
        import torch

        torch.set_num_threads(config.torch_threads)
    return load_engine(
        config.backend,
        config.model_dir,
        name=config.resolved_model_name,
        device=config.device,
        max_batch_size=config.max_batch_size,  # the export's TensorRT engines are sized and checked at it
        options=config.backend_options(),
    )


class Server:
    """One slotstream server: ``await start()``, then ``await stop()``.

    Args:
        config: the settings.
        engine_factory: builds the engine from the config (tests inject engines here).

    Attributes:
        model_abandoned: set by :meth:`stop` when a model call was still running at the end of the grace
            period, so the engine's thread was left running (``serve`` then exits the process without waiting,
            with status 1).
        warm_up_abandoned: set by :meth:`stop` when it cut the model's warm-up short (nothing was served), or a
            reload's load or warm-up (``Admin.ReloadModel``), and the thread doing it was left running (``serve``
            then exits the process without waiting, with status 0).
        connections_abandoned: set by :meth:`stop` when the gRPC server had not stopped :data:`GRPC_STOP_S` after
            its calls were cancelled (a client that does not read): its stop goes on in the background (``serve``
            then exits the process without waiting for it, with status 0, or 1 after a failure).
    """

    def __init__(self, config: ServiceConfig, engine_factory: EngineFactory = default_engine_factory) -> None:
        self.config = config
        self.metrics = Metrics()
        self.port = 0
        self.metrics_port: int | None = None
        self.tls: ReloadingServerCredentials | None = None  # with --tls-cert: follows renewed certificate files
        self.manager: SessionManager | None = None
        self._engine_factory = engine_factory
        self._decode_executor = ThreadPoolExecutor(config.decode_threads, thread_name_prefix="decode")
        self._grpc: Any = None
        self._health = health.aio.HealthServicer()
        self._servicer: PerceptionServicer | None = None
        self._versions: ModelVersions | None = None  # the model's runners, once it is loaded
        self._on_call: Callable[[bool], None] | None = None  # each model call's outcome (--model-failure-limit)
        self._reaper: asyncio.Task[None] | None = None
        self._warmup: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._token_file: TokenFile | None = None  # with --auth-token-file
        self._tracing: FrameTracing | None = None  # with --otlp-endpoint
        self._token_watch: asyncio.Task[None] | None = None
        self._admin_token_file: TokenFile | None = None  # with --admin-token-file
        self._admin_token_watch: asyncio.Task[None] | None = None
        self._model_stalled = False
        self.model_abandoned = False
        self.warm_up_abandoned = False
        self.connections_abandoned = False
        self._listening = False
        self._grpc_stopping: asyncio.Future[None] | None = None  # a stop that outlived GRPC_STOP_S
        self._model_failing = False
        self._shutting_down = False
        self._drain_deadline = math.inf  # perf_counter() by which a shutdown's drain ends (see stop, hurry)
        self._auth = False
        self._health_updates: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()
        self.failure: BaseException | None = None
        self.batch_log: list[tuple[Hashable, ...]] | None = None

    async def start(self, wait_ready: bool = True, on_failure: Callable[[], None] | None = None) -> None:
        """Load the model, start listening, and warm up.

        Args:
            wait_ready: return only once warm-up is done and the server is SERVING; otherwise return as
                soon as it listens (health says NOT_SERVING until :attr:`ready` is set).
            on_failure: with ``wait_ready=False``, called on the event loop if warm-up then fails; the error is
                logged and kept in :attr:`failure`, and the server stays NOT_SERVING until stopped.

        Raises:
            ConfigError, BackendUnavailable, FileNotFoundError, ValueError: the model cannot be loaded.
            ListenError: an address cannot be bound (a port in use is found before the model loads).
            Exception: with ``wait_ready``, whatever warm-up raised.
        """
        config = self.config
        quiet_client_departures()  # a client gone while its replies waited is routine: INFO, not a core traceback
        for flag, address in (("--listen", config.listen), ("--metrics-listen", config.metrics_listen)):
            if address:  # said before the model loads, without gRPC's own error line
                check_listen_address(flag, address)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        engine = await loop.run_in_executor(None, self._engine_factory, config)
        card = engine.card
        name = card.name
        _log.info(
            "model loaded",
            extra={"model": name, "version": card.version, "model_version": card.version, "backend": card.backend},
        )
        memory_limit = memory_limit_bytes()  # read once: the reply budget and the start-up warnings both use it
        limits = SessionLimits(
            max_streams=config.max_streams,
            max_streams_per_client=config.max_streams_per_client,
            open_timeout_s=config.open_timeout_s,
            default_idle_timeout_s=config.idle_timeout_s,
            max_idle_timeout_s=config.max_idle_timeout_s,
            max_resume_window_s=config.max_resume_window_s,
            resume_history=config.resume_history,
            max_mask_pixels=config.max_image_pixels,
            max_reply_bytes=config.max_message_bytes,
            reply_budget_bytes=config.reply_budget_bytes(memory_limit),
            default_frame_fit=FrameFit.UNSPECIFIED if config.frame_fit == "auto" else FrameFit.named(config.frame_fit),
        )
        if config.model_failure_limit > 0:
            monitor = ModelFailureMonitor(
                config.model_failure_limit,
                lambda failing: loop.call_soon_threadsafe(self._on_model_failing, failing),
            )
            self._on_call = monitor.record
        runner = self._new_runner(engine)
        manager = SessionManager({name: runner}, name, limits, self.metrics)
        _log.info("model runner", extra={"instances": runner.instances, "max_batch_size": runner.max_batch_size})
        self.manager = manager
        self._versions = ModelVersions(
            manager,
            runner,
            lambda: self._engine_factory(config),
            self._new_runner,
            self.metrics,
            warm_up=config.warmup,
        )
        if config.otlp_endpoint:
            self._tracing = FrameTracing.to_otlp(config.otlp_endpoint, config.trace_sample_ratio)
        self._servicer = PerceptionServicer(
            manager,
            self._decode_executor,
            self.metrics,
            max_image_pixels=config.max_image_pixels,
            check_jpeg_data=config.jpeg_damage_check,
            max_pending_frames=config.max_pending_frames,
            max_buffered_reply_bytes=config.max_buffered_reply_bytes,
            max_request_bytes=config.max_message_bytes,  # the gRPC server's receive limit (see _listen)
            tracing=self._tracing,
            shared_memory=config.shared_memory,
        )
        await self._listen()
        if config.metrics_listen:
            try:
                self.metrics_port = self.metrics.serve_http(config.metrics_listen)
            except OSError as error:
                raise ListenError(
                    f"--metrics-listen {config.metrics_listen}: cannot listen there ({error.strerror}); choose "
                    "another address, or --metrics-listen '' to serve no metrics"
                ) from error
        self._reaper = asyncio.create_task(manager.run_reaper(), name="reaper")
        self._heartbeat = asyncio.create_task(self._beat(), name="heartbeat")
        if self._token_file is not None:  # a revoked token ends its calls though no new call arrives
            self._token_watch = asyncio.create_task(self._token_file.watch(), name="token-watch")
        if self._admin_token_file is not None:  # its reloads are logged (and a bad file warned about) when they happen
            self._admin_token_watch = asyncio.create_task(self._admin_token_file.watch(), name="admin-token-watch")
        if config.model_stall_timeout_s > 0:
            watchdog = ModelWatchdog(self._versions.busy_for_s, config.model_stall_timeout_s, self._on_model_stall)
            self._watchdog = asyncio.create_task(watchdog.run(), name="model-watchdog")
        _log.info("settings", extra=self.effective_settings())
        warnings = (*config.security_warnings(), *config.memory_warnings(memory_limit), *config.tracing_warnings())
        for warning in warnings:
            _log.warning(warning)
        _log.info("listening", extra={"port": self.port, "load_s": round(time.perf_counter() - started, 3)})
        self._warmup = asyncio.create_task(self._warm_up(), name="warmup")
        if wait_ready:
            await self._warmup
        else:
            self._warmup.add_done_callback(lambda task: self._on_warm_up_done(task, on_failure))

    def effective_settings(self) -> dict[str, Any]:
        """What an operator needs to know about this server once it listens, as the ``settings`` start-up log line
        gives it (:func:`~service.server_settings.effective_settings` lists the keys).

        Raises:
            RuntimeError: before :meth:`start` has loaded the model.
        """
        runner, manager = self._runner, self.manager
        if runner is None or manager is None:
            raise RuntimeError("the server has not loaded its model yet")
        return effective_settings(
            self.config, runner, manager, ListeningAt(self.port, self.metrics_port), token_auth=self._auth
        )

    async def _beat(self) -> None:
        """Stamp the heartbeat gauge every second, for probes that read metrics rather than gRPC health."""
        while True:
            self.metrics.loop_heartbeat.set(time.time())
            await asyncio.sleep(1.0)

    @property
    def _runner(self) -> ModelRunner | None:
        """The runner new streams get (the current version of the model), once the model is loaded."""
        return None if self._versions is None else self._versions.current

    def _new_runner(self, engine: Engine) -> ModelRunner:
        """The runner of ``engine``: the start-up model's, or a version a reload loaded."""
        config = self.config

        def demand() -> int:
            return 0 if self.manager is None else self.manager.demand(runner)

        runner = ModelRunner(
            engine,
            max_batch_size=config.resolved_max_batch_size,
            max_delay_s=config.max_queue_delay_ms / 1e3,
            instances=config.resolved_model_instances(),
            demand=demand,
            on_batch=self._on_batch,
            inline_below_s=config.inline_below_s(),
            on_call=self._on_call,
        )
        return runner

    async def reload_model(self, model: str = "") -> ReloadOutcome:
        """Load the model's folder again (``Admin.ReloadModel``; see :meth:`ModelVersions.reload`).

        Raises:
            StreamAbort: as :meth:`ModelVersions.reload`; ``NOT_READY`` before the model is loaded.
        """
        if self._versions is None:
            raise StreamAbort(ErrorCode.NOT_READY, "the server is still starting: reload once it serves")
        return await self._versions.reload(model)

    def _open_inference_servicer(self) -> OpenInferenceServicer:
        """The Open Inference Protocol's servicer: health as the server's own, ``ModelInfer`` on its models."""
        assert self.manager is not None and self._versions is not None
        manager, config, versions = self.manager, self.config, self._versions

        def live() -> bool:
            return bool(self._model_health() == health_pb2.HealthCheckResponse.SERVING)

        def ready() -> bool:
            return manager.phase == "serving" and not self._shutting_down and live()

        counted = self.metrics.infer_requests
        return OpenInferenceServicer(
            manager,
            ServerHealth(live, ready),
            lambda: [runner.card.version for runner in versions.runners],
            self._decode_executor,
            max_image_pixels=config.max_image_pixels,
            check_jpeg_data=config.jpeg_damage_check,
            on_infer=lambda model, outcome: counted.labels(model, outcome).inc(),
        )

    def _admin_access(
        self, tokens: Callable[[], tuple[bytes, ...]] | None, reads: RefusalReads
    ) -> AdminAccessInterceptor:
        """The guard of the Admin service: ``tokens`` are ``--admin-token-file``'s (re-read when it changes); ``None``:
        the service is off. Refusals are counted in ``slotstream_calls_refused_total``."""
        assert self._servicer is not None
        refused = self.metrics.calls_refused
        return AdminAccessInterceptor(
            tokens, lambda code: refused.labels(code.name.lower()).inc(), self._servicer.refusal_log, reads
        )

    async def _listen(self) -> None:
        config = self.config
        assert self._servicer is not None and self.manager is not None  # made with the model, before it listens
        interceptors = []
        reads = RefusalReads()  # the first messages refusals read, for the token's and the call cap's together
        if config.admin_token_file is not None:
            self._admin_token_file = TokenFile(config.admin_token_file)
        admin_tokens = None if self._admin_token_file is None else self._admin_token_file.current
        tokens = config.bearer_tokens()
        self._auth = bool(tokens)
        if tokens:
            refused = self.metrics.calls_refused.labels(ErrorCode.UNAUTHENTICATED.name.lower())
            source: str | Callable[[], tuple[bytes, ...]] = config.auth_token
            if config.auth_token_file:
                self._token_file = TokenFile(config.auth_token_file, on_reload=self._servicer.end_revoked)
                source = self._token_file.current
                self._servicer.token_source = source
            interceptors.append(
                BearerTokenInterceptor(
                    source,
                    exempt_prefixes=(*EXEMPT_PREFIXES, ADMIN_METHODS),
                    on_denied=refused.inc,
                    reads=reads,
                    misplaced=None if admin_tokens is None else (admin_tokens, ADMIN_TOKEN_MISPLACED),
                )
            )
        interceptors.append(self._admin_access(admin_tokens, reads))  # Admin calls never meet the client token
        too_many = self.metrics.calls_refused.labels(ErrorCode.TOO_MANY_STREAMS.name.lower())
        limiter = CallLimitInterceptor(
            config.resolved_max_calls,
            on_refused=too_many.inc,
            refusal_log=self._servicer.refusal_log,
            reads=reads,
            separate_prefix=ADMIN_METHODS,  # operators get in when clients hold every place
            on_separate_refused=self.metrics.admin_calls_refused.inc,  # not clients refused: counted apart
        )
        interceptors.append(limiter)  # after auth: calls refused for their token are not counted
        malformed = self.metrics.calls_refused.labels(ErrorCode.MALFORMED_REQUEST.name.lower())
        # Last: a call refused for its token or the cap is refused for that, whatever its request's bytes.
        interceptors.append(MalformedRequestInterceptor(malformed.inc, self._servicer.refusal_log))
        self._grpc = grpc.aio.server(interceptors=interceptors, options=server_options(config.max_message_bytes))
        pb_grpc.add_PerceptionServicer_to_server(self._servicer, self._grpc)
        pb_grpc.add_AdminServicer_to_server(AdminServicer(self.manager, self._servicer, self.reload_model), self._grpc)
        open_inference = load_open_inference()[1]
        open_inference.add_GRPCInferenceServiceServicer_to_server(self._open_inference_servicer(), self._grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        for service in READINESS_SERVICES:
            await self._health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        self.metrics.live.set(1)
        names = (
            *(pb.DESCRIPTOR.services_by_name[name].full_name for name in ("Perception", "Admin")),
            OPEN_INFERENCE_SERVICE,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, self._grpc)
        credentials = None
        if config.tls_cert is not None and config.tls_key is not None:
            self.tls = ReloadingServerCredentials(config.tls_cert, config.tls_key, config.tls_client_ca)
            credentials = self.tls.credentials()
        problem = ""
        try:
            if credentials is not None:
                self.port = self._grpc.add_secure_port(config.listen, credentials)
            else:
                self.port = self._grpc.add_insecure_port(config.listen)
        except RuntimeError as error:  # grpcio raises on a failed bind; older versions return port 0 instead
            self.port, problem = 0, f" ({error})"
        if self.port == 0:
            check_listen_address("--listen", config.listen)  # the cause, if it arose while the model loaded
            raise ListenError(f"--listen {config.listen}: cannot listen there{problem}")
        await self._grpc.start()
        self._listening = True

    async def _warm_up(self) -> None:
        assert self._runner is not None and self.manager is not None
        if self.config.warmup:
            started = time.perf_counter()
            await self._runner.warm_up()
            _log.info("warmed up", extra={"seconds": round(time.perf_counter() - started, 3)})
        if self.manager.phase != "starting":
            return
        self.manager.phase = "serving"
        for service in READINESS_SERVICES:
            await self._set_health(service, health_pb2.HealthCheckResponse.SERVING)
        if self._shutting_down:
            return
        self.metrics.ready.set(1)
        self.ready.set()
        _log.info("serving", extra={"port": self.port})

    def _on_warm_up_done(self, task: asyncio.Task[None], on_failure: Callable[[], None] | None) -> None:
        if task.cancelled() or (error := task.exception()) is None:
            return
        self.failure = error
        _log.error("warm-up failed: the server cannot serve", exc_info=error)
        if on_failure is not None:
            on_failure()

    async def _on_model_stall(self, stalled: bool) -> None:
        """Liveness follows the watchdog; readiness too, so no new stream is routed to a stalled model."""
        self._model_stalled = stalled
        await self._apply_model_health()

    def _on_model_failing(self, failing: bool) -> None:
        """On the event loop: liveness and readiness follow the failure monitor, as they follow the watchdog."""
        self._model_failing = failing
        self.metrics.model_failing.set(1 if failing else 0)
        task = asyncio.create_task(self._apply_model_health(), name="model-health")
        self._health_updates.add(task)
        task.add_done_callback(self._health_updates.discard)

    async def _apply_model_health(self) -> None:
        """Set liveness and readiness to NOT_SERVING while the model is stalled or failing, else SERVING.

        Each service's status is read from the flags as it is set, so updates that overlap leave the latest
        state, whatever order they finish in.
        """
        if self.manager is None or self.manager.phase != "serving" or self._shutting_down:
            return  # starting (warm-up has the startup probe) or draining (health is final)
        for service in (*READINESS_SERVICES, LIVENESS_SERVICE):
            await self._set_health(service, self._model_health())
        if self._shutting_down:
            return
        healthy = self._model_health() == health_pb2.HealthCheckResponse.SERVING
        self.metrics.ready.set(1 if healthy else 0)
        self.metrics.live.set(1 if healthy else 0)

    async def _set_health(self, service: str, status: Any) -> None:
        """Set ``service``'s health status, unless a shutdown has begun: from then on health is final (readiness
        NOT_SERVING, liveness as it was)."""
        if not self._shutting_down:
            await self._health.set(service, status)

    def _model_health(self) -> Any:
        healthy = not (self._model_stalled or self._model_failing)
        return health_pb2.HealthCheckResponse.SERVING if healthy else health_pb2.HealthCheckResponse.NOT_SERVING

    def _on_batch(self, keys: Sequence[Hashable]) -> None:
        assert self._runner is not None
        self.metrics.batch_size.labels(self._runner.card.name).observe(len(keys))
        if self.batch_log is not None:
            self.batch_log.append(tuple(keys))

    async def _drain_streams(self) -> None:
        """Drain every connection, including those that resume a detached stream during the drain to collect its
        hand-off, until none is left and no stream waits detached (for at most :data:`DETACHED_WAIT_S`), or until
        the drain's deadline (``perf_counter``; :meth:`hurry` brings it forward). Then free what is left detached."""
        if self._servicer is None or self.manager is None:
            return
        drains: dict[StreamConnection, asyncio.Task[None]] = {}
        logged = False
        detached_until = min(self._drain_deadline, time.perf_counter() + DETACHED_WAIT_S)
        while True:
            deadline = self._drain_deadline
            if self.manager.phase == "draining" and time.perf_counter() >= detached_until:
                self._end_drain()  # stop waiting for detached streams; calls not opened can end now
            for connection in list(self._servicer.connections):
                if connection not in drains:
                    drains[connection] = asyncio.create_task(connection.drain())
                connection.end_unopened()
            running = [task for task in drains.values() if not task.done()]
            detached = self.manager.detached_count()
            if not running and not detached:
                break
            if not logged:
                _log.info("draining streams", extra={"streams": len(running), "detached": detached})
                logged = True
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            # Wake up for a finished drain, or every 50 ms for a new connection or an expired resume window.
            if running:
                await asyncio.wait(running, timeout=min(remaining, 0.05))
            else:
                await asyncio.sleep(min(remaining, 0.05))
        for task in drains.values():
            task.cancel()
        if self.manager.phase == "draining":
            self._end_drain()

    def _end_drain(self) -> None:
        assert self.manager is not None
        if freed := self.manager.end_drain():
            _log.warning("the drain ended with %d detached stream(s) not resumed; their state is lost", freed)

    def hurry(self) -> None:
        """End a shutdown's drain now (a second SIGTERM or Ctrl-C): streams not yet handed off are cancelled and
        freed, calls still running get no further grace. Before a shutdown, the next one ends its drain at once."""
        _log.warning("asked again to stop: ending the drain now; streams not handed off yet are lost")
        self._drain_deadline = time.perf_counter()

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain and stop: see the module docstring. Safe to call more than once.

        Args:
            grace_s: how long streams get to finish (default: the configured grace period).
        """
        grace = self.config.grace_period_s if grace_s is None else grace_s
        # Not the health servicer's enter_graceful_shutdown: it would flip liveness too, and a liveness probe
        # failing during the drain could get the pod killed before its streams are handed off.
        self._shutting_down = True
        for service in READINESS_SERVICES:
            await self._health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.metrics.ready.set(0)
        if self._warmup is not None and not self._warmup.done():
            self._warmup.cancel()
        if self.manager is not None:
            self.manager.begin_drain()
        if self._versions is not None:
            self._versions.begin_shutdown()
        started = time.perf_counter()
        self._drain_deadline = min(self._drain_deadline, started + grace)
        await self._drain_streams()
        if self._grpc is not None:
            await self._stop_grpc(max(0.0, self._drain_deadline - time.perf_counter()))
        for background in (self._reaper, self._watchdog, self._heartbeat, self._token_watch, self._admin_token_watch):
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
        versions, self._versions = self._versions, None
        if versions is not None and versions.current.warming_up:
            await versions.current.abandon()  # cancelled above: nothing was served
            self.warm_up_abandoned = True
            _log.info("shutdown requested while the model warms up: the warm-up is abandoned")
        elif versions is not None:
            remaining = max(1.0, self._drain_deadline - time.perf_counter())
            self.model_abandoned = not await versions.close(remaining)
            self.warm_up_abandoned = versions.reload_abandoned  # a reload's loading thread cannot be stopped
        self._decode_executor.shutdown(wait=False, cancel_futures=True)
        await self._stop_tracing()
        self.metrics.close()
        if self._listening:  # a server that never listened ends with its error alone
            self._listening = False
            _log.info("stopped", extra={"drain_s": round(time.perf_counter() - started, 3)})

    async def _stop_tracing(self) -> None:
        """Export the frame spans still batched and stop tracing, waiting what is left of the grace period, between
        :data:`TRACE_FLUSH_LEAST_S` and :data:`TRACE_FLUSH_S`."""
        tracing, self._tracing = self._tracing, None
        if tracing is None:
            return
        budget_s = min(TRACE_FLUSH_S, max(TRACE_FLUSH_LEAST_S, self._drain_deadline - time.perf_counter()))
        if not await asyncio.to_thread(tracing.shutdown, budget_s):
            _log.warning(
                "the frame traces batched at shutdown were not exported within %.1f s (is the collector at %s "
                "reachable?): they may be lost",
                budget_s,
                self.config.otlp_endpoint,
            )

    async def _stop_grpc(self, remaining_s: float) -> None:
        """Stop the gRPC server: calls still running get ``remaining_s`` (at most :data:`GRPC_STOP_S`) before they
        are cancelled, and their connections :data:`GRPC_STOP_S` more to close. A stop that takes longer (a client
        that does not read) goes on in the background and sets :attr:`connections_abandoned`."""
        grace_s = min(remaining_s, GRPC_STOP_S)
        stopping = asyncio.ensure_future(self._grpc.stop(grace_s))
        # Not wait_for: cancelling gRPC's stop would cancel the future its shutdown callback completes. Calls still
        # running get grace_s before they are cancelled; a connection that then takes another GRPC_STOP_S to close
        # is one whose client does not read.
        done, _ = await asyncio.wait({stopping}, timeout=grace_s + GRPC_STOP_S)
        if done:
            stopping.result()
            return
        self._grpc_stopping = stopping  # a reference, so the task is not collected while it runs
        self.connections_abandoned = True
        _log.warning(
            "the gRPC server had not stopped %.1f s after its calls were cancelled (a client does not read its "
            "replies): its connections are abandoned",
            GRPC_STOP_S,
        )
