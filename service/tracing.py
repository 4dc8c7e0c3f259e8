"""Frame traces for OpenTelemetry: a span for each frame a stream answers, exported over OTLP/gRPC.

With ``--otlp-endpoint`` set, the server records a frame as a ``frame`` span (kind SERVER) from the moment its
request was read to the moment gRPC took its answer, with the outcome (``result``, ``dropped``, ``error``) and the
stream, frame and model as attributes. A result's span has five children, one after the other and covering it:
``decode``, ``queue``, ``inference``, ``postprocess`` (the answer's :class:`~service.types.LatencyBreakdown`) and
``reply`` (the answer waiting for gRPC to take it). A frame that carries a W3C ``traceparent`` continues that trace,
as a child of the client's span, and is recorded exactly when the client sampled it; other frames start traces of
their own, sampled at ``--trace-sample-ratio``. The exporter takes its other settings (headers, certificates,
timeout, compression) from the standard ``OTEL_EXPORTER_OTLP_*`` variables, and the span batching from
``OTEL_BSP_*``; ``OTEL_SERVICE_NAME`` renames the service (default ``slotstream``).

The spans are made after the frame is answered, from times the server keeps anyway, so tracing adds no work on a
frame's path, and nothing at all when it is off. OpenTelemetry is imported only when tracing is started. A frame
keeps at most :data:`~service.types.MAX_TRACEPARENT_BYTES` and :data:`~service.types.MAX_TRACESTATE_BYTES` of its
context, and OpenTelemetry's own warnings about malformed contexts (one per frame) and failed exports (one per
batch while the collector is down) are let through once a minute each.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from service.types import (
    MAX_TRACEPARENT_BYTES,
    MAX_TRACESTATE_BYTES,
    FrameDropped,
    FrameError,
    FrameRequest,
    FrameResponse,
    FrameResult,
)

_log = logging.getLogger(__name__)

SERVICE_NAME = "slotstream"
"""The traces' ``service.name`` unless ``OTEL_SERVICE_NAME`` gives another."""


_CONTEXT_LOGGERS = (
    "opentelemetry.trace.span",
    "opentelemetry.trace.propagation.tracecontext",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
)
"""OpenTelemetry's loggers that warn about each malformed trace context a client sends, and about each failed export
while the collector is down: either could log a line a frame or a batch."""
CONTEXT_WARNING_INTERVAL_S = 60.0
"""Each of their warnings (by message template) is logged at most once in this many seconds."""


class _OncePerInterval(logging.Filter):
    """Lets a logger's records through at most once per ``interval_s`` for each message template."""

    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now, template = time.monotonic(), str(record.msg)[:200]
        if now - self._last.get(template, -math.inf) < self._interval_s:
            return False
        if len(self._last) >= 64:  # templates are a library's constants; a bound all the same
            self._last.clear()
        self._last[template] = now
        return True


def _quiet_context_warnings() -> None:
    """Rate-limit OpenTelemetry's warnings about malformed trace contexts and failed exports (once per process)."""
    for name in _CONTEXT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OncePerInterval) for f in logger.filters):
            logger.addFilter(_OncePerInterval(CONTEXT_WARNING_INTERVAL_S))


class TracingUnavailable(RuntimeError):
    """OpenTelemetry is not installed (it comes with the ``server`` extra)."""


@dataclass(frozen=True)
class FrameTraceStart:
    """What a frame's span needs from its request: its trace context and when it was read.

    Attributes:
        traceparent: the frame's W3C ``traceparent`` (empty: none).
        tracestate: its ``tracestate`` (empty: none).
        received_ns: wall-clock ns when the request was read: the span's start.
    """

    traceparent: str
    tracestate: str
    received_ns: int

    @classmethod
    def of(cls, request: FrameRequest, received_ns: int) -> FrameTraceStart:
        """``request``'s trace context, read at ``received_ns``; a field over :data:`MAX_TRACEPARENT_BYTES` or
        :data:`MAX_TRACESTATE_BYTES` is left out (a longer traceparent leaves the tracestate out too), so a waiting
        frame never holds more than those bytes of it."""
        traceparent, tracestate = request.traceparent, request.tracestate
        if len(traceparent) > MAX_TRACEPARENT_BYTES or not traceparent.isascii():
            return cls("", "", received_ns)
        if len(tracestate) > MAX_TRACESTATE_BYTES or not tracestate.isascii():
            tracestate = ""
        return cls(traceparent, tracestate, received_ns)


class FrameTracing:
    """Records answered frames as spans on its own tracer provider (never the process-wide one).

    Args:
        exporter: the OpenTelemetry span exporter the spans go to (batched).
        sample_ratio: the share of frames without a trace context of their own that are recorded (0-1).
    """

    def __init__(self, exporter: Any, sample_ratio: float) -> None:
        try:
            from opentelemetry import trace
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
            from opentelemetry.trace.status import Status, StatusCode
        except ImportError as error:
            raise _unavailable(error) from error
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME})
        sampler = ParentBased(root=TraceIdRatioBased(sample_ratio))
        self._provider = TracerProvider(sampler=sampler, resource=resource, shutdown_on_exit=False)
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("slotstream.service")
        self._server_kind = trace.SpanKind.SERVER
        self._in_context = trace.set_span_in_context
        self._error = functools.partial(Status, StatusCode.ERROR)  # (description) -> an error status
        self._propagator = TraceContextTextMapPropagator()
        self._failures_logged = 0
        _quiet_context_warnings()

    @classmethod
    def to_otlp(cls, endpoint: str, sample_ratio: float) -> FrameTracing:
        """Tracing exported to the OTLP/gRPC collector at ``endpoint`` (``http://`` for a plain connection,
        ``https://`` for TLS).

        Raises:
            TracingUnavailable: OpenTelemetry or its OTLP exporter is not installed.
        """
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as error:
            raise _unavailable(error) from error
        return cls(OTLPSpanExporter(endpoint=endpoint), sample_ratio)

    def record(self, start: FrameTraceStart, response: FrameResponse, model: str, replied_ns: int) -> None:
        """Record the frame ``start`` describes, answered with ``response`` (taken by gRPC at ``replied_ns``), if
        its trace is sampled. Never raises: a failure is logged (the first few times) and the frame goes untraced."""
        try:
            self._record(start, response, model, replied_ns)
        except Exception:  # tracing must never cost a frame
            if self._failures_logged < 3:
                self._failures_logged += 1
                _log.exception("a frame's trace could not be recorded", extra={"stream_id": response.stream_id})

    def _record(self, start: FrameTraceStart, response: FrameResponse, model: str, replied_ns: int) -> None:
        # bounded by FrameTraceStart.of; a tracestate without a traceparent is ignored by the propagator
        carrier = {"traceparent": start.traceparent, "tracestate": start.tracestate}
        parent = self._propagator.extract(carrier) if start.traceparent else None
        attributes: dict[str, str | int] = {
            "rpc.system": "grpc",
            "rpc.service": "slotstream.v1.Perception",
            "rpc.method": "Stream",
            "slotstream.stream_id": response.stream_id,
            "slotstream.frame_index": response.frame_index,
            "slotstream.model": model,
            "slotstream.model_version": response.model_version,
        }
        span = self._tracer.start_span("frame", parent, self._server_kind, attributes, start_time=start.received_ns)
        if not span.is_recording():  # not sampled: nothing more to build
            return
        end_ns = max(start.received_ns, replied_ns)
        if isinstance(response, FrameResult):
            span.set_attribute("slotstream.outcome", "result")
            span.set_attribute("slotstream.batch_size", response.latency.batch_size)
            self._stages(span, start.received_ns, response, end_ns)
        elif isinstance(response, FrameDropped):
            span.set_attribute("slotstream.outcome", "dropped")
            span.set_attribute("slotstream.drop_reason", response.reason.name)
            span.set_attribute("slotstream.message", response.message)
        elif isinstance(response, FrameError):
            span.set_attribute("slotstream.outcome", "error")
            span.set_attribute("slotstream.error_code", response.code.name)
            span.set_status(self._error(f"{response.code.name}: {response.message}"))
        span.end(end_time=end_ns)

    def _stages(self, span: Any, received_ns: int, result: FrameResult, end_ns: int) -> None:
        """The result's stages as children of ``span``, laid end to end from ``received_ns``, then ``reply`` to
        ``end_ns``."""
        latency = result.latency
        context = self._in_context(span)
        stages = (
            ("decode", latency.decode_ms),
            ("queue", latency.queue_ms),
            ("inference", latency.inference_ms),
            ("postprocess", latency.postprocess_ms),
        )
        at_ns = received_ns
        for name, ms in stages:
            stage_end = min(end_ns, at_ns + max(0, round(ms * 1e6)))
            stage = self._tracer.start_span(name, context, start_time=at_ns)
            if name == "inference":
                stage.set_attribute("slotstream.batch_size", latency.batch_size)
            stage.end(end_time=stage_end)
            at_ns = stage_end
        self._tracer.start_span("reply", context, start_time=at_ns).end(end_time=end_ns)

    def shutdown(self, timeout_s: float) -> bool:
        """Export the spans still batched and stop, waiting at most ``timeout_s`` (the exporter's own retries can
        take longer: they go on in a daemon thread, which does not hold the process up). Returns whether it
        finished in time."""
        done = threading.Event()

        def stop() -> None:
            try:
                self._provider.shutdown()
            finally:
                done.set()

        threading.Thread(target=stop, name="trace-shutdown", daemon=True).start()
        return done.wait(timeout_s)


def tracing_problem() -> str | None:
    """Why tracing cannot start here (OpenTelemetry's SDK or OTLP exporter missing), or ``None``; looks the
    modules up without importing them."""
    import importlib.util

    for name in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.grpc"):
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return f"{name} is not installed: pip install 'slotstream[server]' (it brings OpenTelemetry)"
    return None


def _unavailable(error: ImportError) -> TracingUnavailable:
    return TracingUnavailable(
        f"--otlp-endpoint needs OpenTelemetry ({error.name or error}): pip install 'slotstream[server]'"
    )


__all__ = [
    "FrameTraceStart",
    "FrameTracing",
    "TracingUnavailable",
    "tracing_problem",
]
