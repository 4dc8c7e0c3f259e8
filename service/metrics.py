"""Prometheus metrics of one server, in their own registry, served over HTTP at ``/metrics`` by a server that caps
and times out its connections (:mod:`service.metrics_http`).

Label sets are bounded (reasons, outcomes, model names), never per stream id. Every label value known in advance
is exported at 0 from the start (each error code, release and drop reason; each outcome and open kind of each
served model), so a ratio or ``increase()`` over a counter has a series before the first event. Names:

- ``slotstream_streams_active`` (gauge, by model): streams holding state, attached or waiting for resume.
- ``slotstream_streams_detached`` (gauge): of those, streams waiting for a resume.
- ``slotstream_streams_not_reading`` (gauge): streams whose next reply has waited at least a second for its client
  to read (gRPC flow control holds it); updated about once a second. A stream that stays here for its idle timeout
  is taken from its client (``CLIENT_NOT_READING``).
- ``slotstream_streams_opened_total`` (by model, kind: new / resumed / handed_off).
- ``slotstream_streams_released_total`` (by reason: closed / cancelled / idle / stalled / resume_expired / displaced
  / drained / lost / error / ended): streams whose state was freed. ``closed`` counts close requests; ``cancelled``
  streams without a resume window whose connection ended without one (a stream with a resume window waits detached
  instead, and ends as ``resume_expired`` if nobody resumes it); ``idle`` streams that got no frame for their idle
  timeout; ``stalled`` streams without a resume window whose client took no reply for that long (one with a resume
  window is detached instead, like a dropped connection); ``displaced`` detached streams whose place a new stream
  took at ``--max-streams`` or ``--max-streams-per-client`` (the opener's own first, then the one detached longest);
  ``drained`` streams a shutdown ended, their hand-off taken by gRPC, or cut off when the grace period ran out;
  ``lost`` streams that were waiting detached for a resume when a drain ended, or whose hand-off their connection
  never took, so nobody collected their hand-off and their state is gone; ``error`` streams whose call the server
  ended with an error status (a second open on the call, a server error), which frees their state even with a resume
  window, and streams without a resume window whose call ended on a request that does not parse (with one, such a
  stream is detached like a dropped connection); ``ended`` streams an operator ended (``Admin.EndStream``).
- ``slotstream_open_rejected_total`` (by code): opens refused (too many streams, unknown model, a second open on
  one call, an open that does not parse, a resume of an expired stream, ...). Each also ends its call, so it is
  counted in ``slotstream_calls_refused_total`` under the same code as well, except an open refused with
  ``shutting_down`` while the server drains (an end the server chooses, not a refusal), counted here alone: for
  every other code this counter is at most that one.
- ``slotstream_calls_refused_total`` (by code): calls the server ended with an error status: ``unauthenticated`` (no
  or a wrong bearer token, any method, or a ``Stream`` call whose token was revoked), ``malformed_request``,
  ``internal`` (a server error), every code an ``Admin`` call was refused with (``admin_api_off``,
  ``model_load_failed``, ``unknown_stream``, ...), and every other code a stream or a ``Describe`` ended with
  (refused opens are counted here too; the codes no open is refused with, ``unauthenticated``, ``not_open`` and
  ``internal``, only here), except the ends the server chooses itself: ``shutting_down`` (a drain), ``taken_over``
  (resumed elsewhere), ``client_not_reading`` (a client that stopped reading) and an idle reclaim (the stream ends
  with ``STREAM_EXPIRED`` but is counted only in ``slotstream_streams_released_total{reason="idle"}``;
  ``stream_expired`` here counts resumes refused because their stream had expired), and the ``Admin`` calls refused
  at their own cap (``too_many_streams``, counted only in ``slotstream_admin_calls_refused_total``: operators' tools,
  not clients refused). Each refused call is also logged
  (``refused a call``, rate-limited per code; an ``internal`` one as ``stream failed``, with its traceback).
- ``slotstream_admin_calls_refused_total``: ``Admin`` calls refused because :data:`~service.config.MAX_ADMIN_CALLS`
  were held open at once (slow or stuck operators' tools), apart from the clients' refusals.
- ``slotstream_frames_total`` (by model, outcome: result / dropped / error).
- ``slotstream_infer_requests_total`` (by model, outcome: result / error): single images answered through the Open
  Inference Protocol's ``ModelInfer`` (:mod:`service.open_inference`), every refusal of a request for a served model
  counted as an error (one for a model not served is not counted: its name is the client's); they are not stream
  frames, so
  ``slotstream_frames_total`` and the per-frame stage histograms leave them out.
- ``slotstream_frames_dropped_total`` (by reason: superseded / shutting_down / stale).
- ``slotstream_frame_errors_total`` (by code): frames answered with a ``FrameError`` (also logged, ``frame
  rejected``, rate-limited per code).
- ``slotstream_batch_size`` (histogram, by model): frames per batch the batcher dispatched (a batch that mixes
  streams' first frames with later ones runs as two model calls, ``step`` and then ``first_step``).
- ``slotstream_decode_seconds``, ``slotstream_queue_seconds``, ``slotstream_inference_seconds``,
  ``slotstream_postprocess_seconds``, ``slotstream_e2e_seconds`` (histograms, by model): per-frame latency stages,
  the ``latency`` of each result, one observation per frame answered with a result (the same ``_count`` for
  each, and the stages add up to e2e, receipt to result). Inference is the duration of the model call the frame
  was part of, and postprocess the mask making of that call plus the frame's own (masks above 512 x 512, 128 x 128
  on a GPU): a call of B frames is observed B times, so these two ``_sum`` series exceed the model's busy time (they
  are the time frames spent, not the time the model spent); ``slotstream_batch_size`` gives the frames per call.
- ``slotstream_state_bytes`` (gauge): memory held by recurrent states, including resume history.
- ``slotstream_reply_budget_reserved_bytes`` (gauge): of ``--max-total-buffered-reply-bytes``, what the open
  streams have reserved for replies their clients have not read yet (at their reply-size bounds), and
  ``slotstream_reply_budget_bytes`` (gauge) that budget: new streams are refused ``too_many_streams`` when
  the rest has no room for one more reply.
- ``slotstream_ready`` (gauge): 1 once the model is loaded and warmed up and until shutdown begins, 0 while the
  model is stalled or failing.
- ``slotstream_model_failing`` (gauge): 1 while the last ``--model-failure-limit`` model calls all failed (liveness
  fails), back to 0 at the next call that succeeds.
- ``slotstream_live`` (gauge): 1 from start-up on, a shutdown's drain included, 0 while the model is stalled or
  failing (what the liveness health service ``slotstream.v1.Liveness`` reports).
- ``slotstream_model_reloads_total`` (by outcome: reloaded / unchanged / failed): ``Admin.ReloadModel`` calls that
  ran: a new version made current, the same version found, or a folder that did not load or warm up.
- ``slotstream_model_versions`` (gauge): versions of the model in memory: 1, and more after a reload while streams
  opened before it still run the version they opened with, and while a reload warms a new version up (counted from
  the end of its load).
- ``slotstream_event_loop_heartbeat_seconds`` (gauge): Unix time of the event loop's latest heartbeat, set when the
  metrics are made and every second while the loop runs. These metrics are served from their own thread, so an old
  heartbeat is how a probe reading them notices a blocked event loop (the gRPC liveness check notices it by timing
  out).
- ``process_*`` (resident memory, CPU seconds, open file descriptors, start time) and ``python_info``, from
  ``prometheus_client``'s standard collectors.
"""

from __future__ import annotations

import logging
import time
import typing

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from service.errors import ADMIN_ONLY_CODES, ENDED_BY_THE_SERVER, FRAME_ERROR_CODES, STREAM_ERROR_CODES, ErrorCode
from service.metrics_http import MetricsHttpServer, start_metrics_server
from service.session import ReleaseReason
from service.types import DropReason, OpenKind

_log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.033, 0.066, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 64)

REFUSED_CALL_CODES = (
    *(code.name.lower() for code in STREAM_ERROR_CODES if code not in ENDED_BY_THE_SERVER),
    "internal",
)
"""Label values of ``slotstream_calls_refused_total``."""
REJECTED_OPEN_CODES = tuple(
    code.name.lower()
    for code in STREAM_ERROR_CODES
    if code
    not in (
        ErrorCode.NOT_OPEN,
        ErrorCode.TAKEN_OVER,
        ErrorCode.UNAUTHENTICATED,
        ErrorCode.CLIENT_NOT_READING,
        ErrorCode.ENDED_BY_OPERATOR,
        *ADMIN_ONLY_CODES,
    )
)
"""Label values of ``slotstream_open_rejected_total``: the codes an open can be refused with."""
RELEASE_REASONS: tuple[str, ...] = typing.get_args(ReleaseReason)
"""Label values of ``slotstream_streams_released_total``."""
RELOAD_OUTCOMES = ("reloaded", "unchanged", "failed")
"""Label values of ``slotstream_model_reloads_total``: a new version made current, the same version found, or a
folder that did not load or warm up."""


class Metrics:
    """The server's metric families; :attr:`registry` is private to this instance (several servers may share
    a process, as in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.streams_active = Gauge("slotstream_streams_active", "Streams holding state.", ["model"], registry=r)
        self.streams_detached = Gauge("slotstream_streams_detached", "Streams waiting for a resume.", registry=r)
        self.streams_not_reading = Gauge(
            "slotstream_streams_not_reading", "Streams whose next reply waited over 1 s for its client.", registry=r
        )
        self.streams_opened = Counter(
            "slotstream_streams_opened", "Streams opened, by kind.", ["model", "kind"], registry=r
        )
        self.streams_released = Counter(
            "slotstream_streams_released", "Streams whose state was freed, by reason.", ["reason"], registry=r
        )
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.open_rejected = Counter("slotstream_open_rejected", "Opens refused, by code.", ["code"], registry=r)
        self.calls_refused = Counter(
            "slotstream_calls_refused", "Calls ended with an error status, by code.", ["code"], registry=r
        )
        self.admin_calls_refused = Counter(
            "slotstream_admin_calls_refused", "Admin calls refused at their own cap of calls at once.", registry=r
        )
        self.frames = Counter("slotstream_frames", "Frames answered, by outcome.", ["model", "outcome"], registry=r)
        self.frames_dropped = Counter(
            "slotstream_frames_dropped", "Frames dropped, by reason.", ["reason"], registry=r
        )
        self.frame_errors = Counter("slotstream_frame_errors", "Frames rejected, by code.", ["code"], registry=r)
        self.infer_requests = Counter(
            "slotstream_infer_requests",
            "Open Inference Protocol ModelInfer calls answered, by outcome.",
            ["model", "outcome"],
            registry=r,
        )
        for code in REFUSED_CALL_CODES:
            self.calls_refused.labels(code)
        for code in REJECTED_OPEN_CODES:
            self.open_rejected.labels(code)
        for frame_code in FRAME_ERROR_CODES:
            self.frame_errors.labels(frame_code.name.lower())
        for reason in RELEASE_REASONS:
            self.streams_released.labels(reason)
        for drop in DropReason:
            if drop != DropReason.UNSPECIFIED:
                self.frames_dropped.labels(drop.name.lower())
        self.batch_size = Histogram(
            "slotstream_batch_size",
            "Frames per dispatched batch (first and later frames run as separate calls).",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.decode_seconds = self._latency("slotstream_decode_seconds", "Image decode and conversion time.")
        self.queue_seconds = self._latency(
            "slotstream_queue_seconds",
            "Time waiting: reply window, a free decode thread, previous frame, batching, the batch's other call.",
        )
        self.inference_seconds = self._latency(
            "slotstream_inference_seconds",
            "Per frame: duration of the model call the frame was in (a call of B frames is observed B times).",
        )
        self.postprocess_seconds = self._latency(
            "slotstream_postprocess_seconds",
            "Per frame: mask making of the frame's model call (observed once per frame of it) plus the frame's own.",
        )
        self.e2e_seconds = self._latency("slotstream_e2e_seconds", "Time from frame receipt to result.")
        self.state_bytes = Gauge("slotstream_state_bytes", "Bytes held by recurrent states.", registry=r)
        self.reply_budget_bytes = Gauge(
            "slotstream_reply_budget_bytes", "Bytes all streams may reserve for unread replies.", registry=r
        )
        self.reply_budget_reserved_bytes = Gauge(
            "slotstream_reply_budget_reserved_bytes", "Bytes streams reserved for unread replies.", registry=r
        )
        self.ready = Gauge("slotstream_ready", "1 when serving, 0 otherwise.", registry=r)
        self.model_failing = Gauge(
            "slotstream_model_failing", "1 while the last --model-failure-limit model calls all failed.", registry=r
        )
        self.live = Gauge("slotstream_live", "0 while the model is stalled or failing, else 1.", registry=r)
        self.model_reloads = Counter(
            "slotstream_model_reloads", "Admin.ReloadModel calls that ran, by outcome.", ["outcome"], registry=r
        )
        for outcome in RELOAD_OUTCOMES:
            self.model_reloads.labels(outcome)
        self.model_versions = Gauge(
            "slotstream_model_versions",
            "Versions of the model in memory: 1, or more while streams opened before a reload run on.",
            registry=r,
        )
        self.loop_heartbeat = Gauge(
            "slotstream_event_loop_heartbeat_seconds", "Unix time of the event loop's latest heartbeat.", registry=r
        )
        # Stamped now, so a scrape before the loop's first beat reads a fresh heartbeat, not the Unix epoch (which
        # an alert on the heartbeat's age would take for a loop blocked for 56 years).
        self.loop_heartbeat.set(time.time())
        self._http: MetricsHttpServer | None = None

    def add_model(self, model: str) -> None:
        """Export the counters labelled by ``model`` at 0: its frame outcomes and open kinds (call once per served
        model, before it serves)."""
        for outcome in ("result", "dropped", "error"):
            self.frames.labels(model, outcome)
        for outcome in ("result", "error"):
            self.infer_requests.labels(model, outcome)
        for kind in OpenKind:
            if kind != OpenKind.UNSPECIFIED:
                self.streams_opened.labels(model, kind.name.lower())

    def _latency(self, name: str, documentation: str) -> Histogram:
        return Histogram(name, documentation, ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry)

    def serve_http(self, address: str) -> int:
        """Serve ``/metrics`` on ``host:port`` in a background thread; returns the bound port (``0`` picks one).
        Connections are capped and timed out (:mod:`service.metrics_http`).

        Raises:
            OSError: the address does not resolve or cannot be bound.
        """
        host, _, port = address.rpartition(":")
        server = start_metrics_server(host.strip("[]"), int(port), self.registry)
        self._http = server
        _log.info("metrics on http://%s:%d/metrics", host, server.port)
        return server.port

    def close(self) -> None:
        """Stop the HTTP server, if running."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
