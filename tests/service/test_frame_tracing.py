"""Frame traces (``--otlp-endpoint``): spans reach a real OTLP/gRPC collector on loopback, continue the frames' own
W3C trace contexts, follow their sampling flags and carry each frame's stages and outcome."""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from service_helpers import make_config, make_video, raw, raw_exchange, run

from service import server as server_module
from service import wire
from service.client import Client, FrameDropped, FrameError, FrameResult, StreamOptions
from service.config import ConfigError
from service.generated import pb
from service.tracing import FrameTraceStart
from service.types import EncodedImage, FrameRequest, ImageEncoding

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
STAGES = ["decode", "queue", "inference", "postprocess", "reply"]


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace collector: keeps every span it is sent, with its service name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self._server = grpc.server(ThreadPoolExecutor(2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def Export(self, request: Any, context: Any) -> Any:
        with self._lock:
            for resource_spans in request.resource_spans:
                names = [a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"]
                for scope in resource_spans.scope_spans:
                    self.spans.extend((names[0] if names else "", span) for span in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def stop(self) -> None:
        self._server.stop(0)


@pytest.fixture
def collector():
    collector = Collector()
    yield collector
    collector.stop()


def _attributes(span: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for attribute in span.attributes:
        value = attribute.value
        values[attribute.key] = getattr(value, value.WhichOneof("value"))
    return values


def _traceparent(trace_id: str = TRACE_ID, sampled: bool = True) -> str:
    return f"00-{trace_id}-{PARENT_ID}-{'01' if sampled else '00'}"


def test_frames_with_a_sampled_trace_context_become_spans_of_that_trace(start_server, collector):
    """Sample ratio 0: only the frames whose traceparent is sampled are traced; a result's span holds its five
    stages end to end, a drop's and an error's span say what happened."""
    server = start_server(otlp_endpoint=f"http://127.0.0.1:{collector.port}", trace_sample_ratio=0.0)
    clip = make_video(seed=11, frames=6)
    sends: list[dict[str, Any]] = [
        {"traceparent": _traceparent(), "tracestate": "vendor=x"},  # 0: traced
        {"traceparent": _traceparent("1" * 32, sampled=False)},  # 1: the client did not sample it
        {},  # 2: no context, ratio 0
        {"traceparent": _traceparent(), "capture_time_ns": time.time_ns() - 30 * 10**9},  # 3: stale, traced
        {"traceparent": _traceparent()},  # 4: a raw image of the wrong size, traced
        {"traceparent": "not-a-traceparent"},  # 5: ignored: a frame without context, ratio 0
    ]
    broken = EncodedImage(ImageEncoding.RAW_RGB8, bytes(10), 30, 40, 3)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(max_staleness_s=5.0))
            answers = []
            for index, (frame, extra) in enumerate(zip(clip, sends, strict=True)):
                await stream.send(broken if index == 4 else frame, **extra)
                answers.append(await stream.receive())
            await stream.close()
            return stream.opened, answers

    opened, answers = run(scenario())
    assert [type(a) for a in answers] == [FrameResult, FrameResult, FrameResult, FrameDropped, FrameError, FrameResult]
    server.stop(0.5)  # exports what is batched
    spans = [span for _, span in collector.spans]
    frames = {_attributes(s)["slotstream.frame_index"]: s for s in spans if s.name == "frame"}
    assert sorted(frames) == [0, 3, 4]
    for span in frames.values():
        assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == PARENT_ID
        assert span.kind == trace_pb2.Span.SPAN_KIND_SERVER
        attributes = _attributes(span)
        assert attributes["slotstream.stream_id"] == opened.stream_id
        assert attributes["slotstream.model_version"] == opened.model_version
        assert attributes["rpc.method"] == "Stream"
    assert frames[0].trace_state == "vendor=x"

    result = frames[0]
    assert _attributes(result)["slotstream.outcome"] == "result"
    stages = sorted((s for s in spans if s.parent_span_id == result.span_id), key=lambda s: s.start_time_unix_nano)
    assert [s.name for s in stages] == STAGES
    assert stages[0].start_time_unix_nano == result.start_time_unix_nano
    assert stages[-1].end_time_unix_nano == result.end_time_unix_nano
    for before, after in itertools.pairwise(stages):
        assert before.end_time_unix_nano == after.start_time_unix_nano  # end to end, no gap, no overlap
    assert _attributes(stages[2])["slotstream.batch_size"] == 1
    assert answers[0].latency.inference_ms == pytest.approx(
        (stages[2].end_time_unix_nano - stages[2].start_time_unix_nano) / 1e6, abs=1e-3
    )

    dropped = _attributes(frames[3])
    assert dropped["slotstream.outcome"] == "dropped" and dropped["slotstream.drop_reason"] == "STALE"
    assert not [s for s in spans if s.parent_span_id == frames[3].span_id]
    error = frames[4]
    assert _attributes(error)["slotstream.error_code"] == "WRONG_RAW_SIZE"
    assert error.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert error.status.message.startswith("WRONG_RAW_SIZE: ")


def test_frames_without_a_trace_context_are_sampled_at_the_ratio_as_traces_of_their_own(start_server, collector):
    server = start_server(otlp_endpoint=f"http://127.0.0.1:{collector.port}", trace_sample_ratio=1.0)
    clip = make_video(seed=12, frames=3)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            for frame in clip:
                await stream.send(frame)
                await stream.receive()
            await stream.close()

    run(scenario())
    server.stop(0.5)
    frames = [(service, span) for service, span in collector.spans if span.name == "frame"]
    assert len(frames) == 3
    assert {service for service, _ in frames} == {"slotstream"}
    assert all(span.parent_span_id == b"" for _, span in frames)
    assert len({span.trace_id for _, span in frames}) == 3
    assert len(collector.spans) == 3 * (1 + len(STAGES))


def test_a_collector_that_never_answers_neither_fails_frames_nor_holds_the_shutdown_up(
    start_server, silent_listener, monkeypatch
):
    """The collector's port takes connections and never answers, so the last batch's export would wait for the
    exporter's own timeout (10 s): the stop gives it its budget (here 0.5 s) and goes on."""
    monkeypatch.setattr(server_module, "TRACE_FLUSH_S", 0.5)
    server = start_server(otlp_endpoint=f"http://127.0.0.1:{silent_listener}", trace_sample_ratio=1.0)
    clip = make_video(seed=13, frames=3)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            answers = []
            for frame in clip:
                await stream.send(frame)
                answers.append(await stream.receive())
            await stream.close()
            return answers

    assert all(isinstance(answer, FrameResult) for answer in run(scenario()))
    started = time.perf_counter()
    server.stop(0.5)
    assert time.perf_counter() - started < 3.0


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"otlp_endpoint": "127.0.0.1:4317"}, "--otlp-endpoint must be http://host:port"),
        ({"otlp_endpoint": "http://collector"}, "--otlp-endpoint must be http://host:port"),
        ({"otlp_endpoint": "grpc://collector:4317"}, "--otlp-endpoint must be http://host:port"),
        ({"trace_sample_ratio": 1.5}, "--trace-sample-ratio must be a number from 0 to 1, got 1.5"),
        ({"trace_sample_ratio": float("nan")}, "--trace-sample-ratio must be a number from 0 to 1"),
    ],
)
def test_tracing_settings_are_checked(model_dir, overrides, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.").replace("+", r"\+")):
        make_config(model_dir, **overrides)


@pytest.mark.parametrize(
    ("extra", "error", "fragment"),
    [
        ({"traceparent": "00-é"}, ValueError, "traceparent must be ASCII"),
        ({"traceparent": "0" * 129}, ValueError, "traceparent is 129 characters; a server reads at most 128"),
        ({"tracestate": "k=" + "v" * 511}, ValueError, "tracestate is 513 characters; a server reads at most 512"),
        ({"traceparent": b"00"}, TypeError, "traceparent must be a str"),
    ],
)
def test_a_trace_context_a_server_cannot_read_is_refused_before_anything_is_sent(server, extra, error, fragment):
    frame = make_video(seed=14, frames=1)[0]

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            with pytest.raises(error, match=fragment):
                await stream.send(frame, **extra)
            await stream.send(frame)  # the refused frame took no index and left the stream as it was
            answer = await stream.receive()
            await stream.close()
            return answer

    answer = run(scenario())
    assert isinstance(answer, FrameResult) and answer.frame_index == 0


@pytest.fixture
def silent_listener():
    """A loopback port whose connections the kernel accepts and nobody ever answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def test_an_oversized_or_malformed_trace_context_is_read_no_further_and_logged_at_most_once(
    start_server, collector, caplog
):
    """Sent past the client's checks: a 600-byte tracestate is left out of the span (the traceparent kept), a
    200-byte traceparent is ignored whole (ratio 0: no span), and a malformed tracestate on every frame makes
    OpenTelemetry warn once, not once a frame."""
    server = start_server(otlp_endpoint=f"http://127.0.0.1:{collector.port}", trace_sample_ratio=0.0)
    frame = make_video(seed=15, frames=1)[0]
    contexts = [(_traceparent(), "k=" + "v" * 598), (_traceparent() + "-" + "0" * 144, "")]
    contexts += [(_traceparent(), "Vendor=x")] * 4  # an upper-case key is not W3C
    requests = [pb.StreamRequest(open=pb.OpenStream())]
    for index, (traceparent, tracestate) in enumerate(contexts):
        request = wire.request_to_proto(FrameRequest(index, raw(frame)))
        request.frame.traceparent, request.frame.tracestate = traceparent, tracestate
        requests.append(request)
    responses, error = run(raw_exchange(server.target, *requests))
    assert error is None and sum(r.HasField("result") for r in responses) == len(contexts)
    server.stop(0.5)
    frames = {_attributes(s)["slotstream.frame_index"]: s for _, s in collector.spans if s.name == "frame"}
    assert sorted(frames) == [0, 2, 3, 4, 5]
    assert frames[0].trace_id.hex() == TRACE_ID and frames[0].trace_state == ""
    warnings = [r for r in caplog.records if r.name.startswith("opentelemetry") and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


def test_process_takes_the_trace_context_too(start_server, collector):
    server = start_server(otlp_endpoint=f"http://127.0.0.1:{collector.port}", trace_sample_ratio=0.0)
    frame = make_video(seed=16, frames=1)[0]

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            answer = await stream.process(frame, traceparent=_traceparent(), tracestate="vendor=y")
            await stream.close()
            return answer

    assert isinstance(run(scenario()), FrameResult)
    server.stop(0.5)
    (span,) = [s for _, s in collector.spans if s.name == "frame"]
    assert span.trace_id.hex() == TRACE_ID and span.trace_state == "vendor=y"


def test_a_frames_trace_start_keeps_no_more_of_its_context_than_a_server_reads():
    request = FrameRequest(0, raw(make_video(seed=17, frames=1)[0]))
    start = FrameTraceStart.of(replace(request, traceparent=_traceparent(), tracestate="k=v"), 5)
    assert (start.traceparent, start.tracestate, start.received_ns) == (_traceparent(), "k=v", 5)
    long_state = FrameTraceStart.of(replace(request, traceparent=_traceparent(), tracestate="k=" + "v" * 511), 5)
    assert (long_state.traceparent, long_state.tracestate) == (_traceparent(), "")
    long_parent = FrameTraceStart.of(replace(request, traceparent="0" * 129, tracestate="k=v"), 5)
    assert (long_parent.traceparent, long_parent.tracestate) == ("", "")
    assert FrameTraceStart.of(replace(request, traceparent="00-é"), 5).traceparent == ""


def test_tracing_settings_that_trace_nothing_are_warned_about(model_dir):
    quiet = make_config(model_dir).tracing_warnings({})
    assert quiet == []
    ratio_alone = make_config(model_dir, trace_sample_ratio=0.5).tracing_warnings({})
    assert ratio_alone == ["--trace-sample-ratio 0.5 is set, but no frame is traced without --otlp-endpoint"]
    (standard,) = make_config(model_dir).tracing_warnings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert standard.startswith("OTEL_EXPORTER_OTLP_ENDPOINT is set, but this server traces frames only with")
    traced = make_config(model_dir, otlp_endpoint="http://127.0.0.1:4317", trace_sample_ratio=0.5)
    assert traced.tracing_warnings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}) == []


def test_the_server_says_so_when_it_starts(start_server, caplog):
    start_server(trace_sample_ratio=0.5)
    assert any(
        r.levelno == logging.WARNING and "no frame is traced without --otlp-endpoint" in r.getMessage()
        for r in caplog.records
    )
