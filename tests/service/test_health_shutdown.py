"""Readiness (health NOT_SERVING until warmed up), graceful shutdown, metrics, reflection and TLS."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from service_helpers import SlowEngine, make_config, make_video, reference_outputs, run, slow_factory
from test_stream_service import assert_matches

from service.client import Client, FrameError, FrameResult, StreamClosed, StreamError, StreamOptions, TlsFiles
from service.client.__main__ import main as client_main
from service.config import ConfigError, ServiceConfig
from service.engine import Engine, EngineOutput
from service.errors import ErrorCode
from service.process import serve
from service.server import LIVENESS_SERVICE, default_engine_factory
from service.types import CloseReason


async def _health(target: str, service: str = "", timeout_s: float | None = None) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        reply = await health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout_s)
        return int(reply.status)


def test_health_is_not_serving_until_the_model_is_warmed_up(start_server):
    factory, engines = slow_factory(released=False)
    server = start_server(engine_factory=factory, wait_ready=False)
    for service in ("", "slotstream.v1.Perception"):
        assert run(_health(server.target, service)) == health_pb2.HealthCheckResponse.NOT_SERVING

    async def open_too_early():
        async with Client(server.target) as client:
            with pytest.raises(StreamError) as refused:
                await client.open()
            return refused.value

    error = run(open_too_early())
    assert error.status == grpc.StatusCode.UNAVAILABLE and error.code == ErrorCode.NOT_READY
    engines[0].release.set()
    server.call(server.server.ready.wait(), timeout=30)
    assert run(_health(server.target)) == health_pb2.HealthCheckResponse.SERVING
    assert server.metric("slotstream_ready") == 1


@pytest.mark.parametrize("model_instances", [1, 2])
def test_graceful_shutdown_drains_in_flight_frames_and_hands_off(start_server, model_instances):
    """On stop: health flips at once, new opens are refused, every accepted frame is answered, the stream gets
    its hand-off state and ends with UNAVAILABLE; the hand-off continues exactly on another server (with one
    model instance or several on each)."""
    factory, _ = slow_factory(delay_s=0.05)
    draining = start_server(engine_factory=factory, max_pending_frames=8, model_instances=model_instances)
    replacement = start_server(model_instances=model_instances)
    assert draining.model_instances() == replacement.model_instances() == model_instances
    clip = make_video(seed=31, frames=16)
    reference = reference_outputs(draining.model_dir, clip)

    async def scenario():
        answers = []
        async with Client(draining.target) as client, Client(replacement.target) as other:
            stream = await client.open()
            for frame in clip[:8]:
                await stream.send(frame)
            answers.append(await stream.receive())
            stopping = asyncio.get_running_loop().run_in_executor(None, draining.stop, 5.0)
            deadline = time.monotonic() + 5
            while await _health(draining.target) != health_pb2.HealthCheckResponse.NOT_SERVING:
                assert time.monotonic() < deadline, "health still SERVING 5 s into the drain"
                await asyncio.sleep(0.01)
            with pytest.raises(StreamError) as refused:
                await client.open()
            while True:
                try:
                    answers.append(await stream.receive())
                except StreamError as ended:
                    final_error = ended
                    break
            await stopping
            opened = await stream.reconnect(other)
            while stream.unanswered:  # frames the old server never read were re-sent by reconnect()
                answers.append(await stream.receive())
            for frame in clip[8:]:
                answers.append(await stream.process(frame))
            await stream.close()
        return answers, refused.value, final_error, opened

    answers, refused, final_error, opened = run(scenario())
    assert refused.status == grpc.StatusCode.UNAVAILABLE and refused.code == ErrorCode.SHUTTING_DOWN
    assert final_error.status == grpc.StatusCode.UNAVAILABLE and final_error.code == ErrorCode.SHUTTING_DOWN
    closed = answers.pop(next(i for i, a in enumerate(answers) if isinstance(a, StreamClosed)))
    assert closed.reason == CloseReason.SERVER_DRAINING and closed.handoff is not None
    results = [a for a in answers if isinstance(a, FrameResult)]
    assert [r.frame_index for r in results] == list(range(len(clip))), "a frame was lost or repeated"
    assert opened.kind.name == "HANDED_OFF"
    assert_matches(results, reference)


class HangingEngine(SlowEngine):
    """Once :attr:`armed`, every ``step`` waits for :attr:`unblock`: a model call that hangs until the test
    lets it go (warm-up runs before arming)."""

    def __init__(self, inner: Engine) -> None:
        super().__init__(inner)
        self.release.set()
        self.armed = threading.Event()
        self.unblock = threading.Event()
        self.hanging = threading.Event()

    def step(self, frames: np.ndarray, state: np.ndarray) -> EngineOutput:
        if self.armed.is_set():
            self.hanging.set()
            assert self.unblock.wait(30), "the hung call was never released"
        return self.inner.step(frames, state)


def _hanging_server(start_server, **settings):
    """A server whose engines are :class:`HangingEngine` (a 0.3 s stall timeout), and the list of them."""
    engines: list[HangingEngine] = []

    def factory(config: ServiceConfig) -> Engine:
        engines.append(HangingEngine(default_engine_factory(config)))
        return engines[-1]

    return start_server(engine_factory=factory, model_stall_timeout_s=0.3, **settings), engines


def test_a_hung_model_call_fails_liveness_and_readiness_until_it_returns(start_server):
    # Calls on a model thread; one hanging on the event-loop thread is the next test.
    server, engines = _hanging_server(start_server, inline_model_max_ms=0)
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    frames = make_video(seed=3, frames=2)

    async def scenario():
        statuses = {"before": await _health(server.target, LIVENESS_SERVICE)}
        async with Client(server.target) as client:
            stream = await client.open()
            await stream.process(frames[0])  # first_step does not hang
            engines[0].armed.set()
            await stream.send(frames[1])  # step hangs
            assert await asyncio.to_thread(engines[0].hanging.wait, 10), "the step call did not start"
            statuses["stalled"] = await _wait_for_health(server.target, not_serving)
            engines[0].unblock.set()
            answer = await stream.receive()
            statuses["recovered"] = await _wait_for_health(server.target, serving)
            await stream.close()
        return statuses, answer

    statuses, answer = run(scenario())
    assert statuses["before"] == serving
    assert statuses["stalled"] == [not_serving, not_serving]
    assert isinstance(answer, FrameResult) and answer.frame_index == 1, "the slow frame is still answered"
    assert statuses["recovered"] == [serving, serving]


def test_liveness_stays_serving_while_the_server_drains_and_readiness_does_not(start_server):
    """On stop readiness turns NOT_SERVING at once; liveness (and ``slotstream_live``) stays SERVING while the
    streams drain, so a liveness probe cannot get the pod killed mid-drain. The health servicer's own graceful
    shutdown used to flip liveness too."""
    engines: list[HangingEngine] = []

    def factory(config: ServiceConfig) -> Engine:
        engines.append(HangingEngine(default_engine_factory(config)))
        return engines[-1]

    server = start_server(engine_factory=factory, inline_model_max_ms=0)
    frames = make_video(seed=3, frames=2)
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            await stream.process(frames[0])
            engines[0].armed.set()
            await stream.send(frames[1])  # holds the drain until the test lets the call return
            assert await asyncio.to_thread(engines[0].hanging.wait, 10)
            stopping = asyncio.get_running_loop().run_in_executor(None, server.stop, 10.0)
            deadline = time.monotonic() + 5
            while await _health(server.target) != not_serving:
                assert time.monotonic() < deadline, "readiness still SERVING 5 s into the drain"
                await asyncio.sleep(0.01)
            statuses = [await _health(server.target, name) for name in ("slotstream.v1.Perception", LIVENESS_SERVICE)]
            gauges = server.gauge("slotstream_live"), server.gauge("slotstream_ready")
            draining = not stopping.done()
            engines[0].unblock.set()
            answers = []
            with pytest.raises(StreamError) as ended:
                while True:
                    answers.append(await stream.receive())
            await stopping
            return statuses, gauges, draining, answers, ended.value

    statuses, gauges, draining, answers, ended = run(scenario())
    assert draining, "the drain had ended before the checks"
    assert statuses == [not_serving, serving]
    assert gauges == (1, 0)
    assert isinstance(answers[0], FrameResult) and ended.code == ErrorCode.SHUTTING_DOWN


async def _timed_stop(server, engine: HangingEngine) -> float:
    """Seconds ``server.stop(0.5)`` takes while ``engine`` hangs (released afterwards, so the thread ends)."""
    started = time.perf_counter()
    try:
        await asyncio.to_thread(server.stop, 0.5)
    finally:
        engine.unblock.set()
    return time.perf_counter() - started


def test_stop_keeps_to_its_grace_period_when_a_model_call_hangs(start_server):
    """The engine's close would queue behind the hung call: stop gives up on it after the grace period and
    says so (``serve`` then exits without waiting for the model thread)."""
    server, engines = _hanging_server(start_server, inline_model_max_ms=0)
    frames = make_video(seed=3, frames=2)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            await stream.process(frames[0])
            engines[0].armed.set()
            await stream.send(frames[1])  # step hangs
            assert await asyncio.to_thread(engines[0].hanging.wait, 10), "the step call did not start"
            return await _timed_stop(server, engines[0])

    elapsed = run(scenario())
    assert server.server.model_abandoned
    assert elapsed < 5.0, f"stop took {elapsed:.1f} s with a 0.5 s grace period"


class HangingOnSecondThreadEngine(HangingEngine):
    """Once armed, ``step`` hangs on the second model thread only; on the first it waits until the second hangs
    (up to 10 s), so that a frame sent meanwhile has to go to the second thread, however slow the machine."""

    def step(self, frames: np.ndarray, state: np.ndarray) -> EngineOutput:
        if self.armed.is_set() and not threading.current_thread().name.endswith("-1_0"):
            self.hanging.wait(10)
            return self.inner.step(frames, state)
        return super().step(frames, state)


def test_stop_keeps_to_its_grace_period_when_a_call_hangs_on_another_model_thread(start_server):
    """With several model threads the hung call may be on any of them, not only the one that frees the engine:
    stop must still give up after the grace period, without blocking the event loop on the hung thread."""
    engines: list[HangingEngine] = []

    def factory(config: ServiceConfig) -> Engine:
        engines.append(HangingOnSecondThreadEngine(default_engine_factory(config)))
        return engines[-1]

    server = start_server(
        engine_factory=factory,
        model_instances=2,
        max_batch_size=1,
        max_queue_delay_ms=1,
        inline_model_max_ms=0,
        model_stall_timeout_s=0.3,
    )
    assert server.model_instances() == 2
    frames = make_video(seed=4, frames=2)

    async def scenario():
        async with Client(server.target) as client:
            first, second = await client.open(), await client.open()
            await first.process(frames[0])
            await second.process(frames[0])
            engines[0].armed.set()
            await first.send(frames[1])  # holds the first thread until the second hangs
            await second.send(frames[1])  # so this one goes to the second thread, and hangs there
            assert await asyncio.to_thread(engines[0].hanging.wait, 10), "no call reached the second thread"
            return await _timed_stop(server, engines[0])

    elapsed = run(scenario())
    assert server.server.model_abandoned, "stop reported the hung model as released"
    assert elapsed < 5.0, f"stop took {elapsed:.1f} s with a 0.5 s grace period"


def test_a_hung_inline_model_call_makes_health_checks_time_out_until_it_returns(start_server):
    server, engines = _hanging_server(start_server, inline_model_max_ms=10_000)
    frames = make_video(seed=3, frames=3)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            await stream.process(frames[0])  # a lone stream's first call runs on a model thread
            await stream.process(frames[1])  # it was short: this one runs on the event-loop thread
            engines[0].armed.set()
            await stream.send(frames[2])  # and so does this one, which hangs
            assert await asyncio.to_thread(engines[0].hanging.wait, 10), "the step call did not start"
            with pytest.raises(grpc.aio.AioRpcError) as stalled:
                await _health(server.target, LIVENESS_SERVICE, timeout_s=1.0)
            engines[0].unblock.set()
            answer = await stream.receive()
            recovered = await _health(server.target, LIVENESS_SERVICE, timeout_s=5.0)
            await stream.close()
        return stalled.value.code(), answer, recovered

    code, answer, recovered = run(scenario())
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED, "a liveness probe counts a timed-out check as a failure"
    assert isinstance(answer, FrameResult) and answer.frame_index == 2, "the slow frame is still answered"
    assert recovered == health_pb2.HealthCheckResponse.SERVING


class BrokenEngine(SlowEngine):
    """While :attr:`broken` is set, every ``step`` raises, as a sticky CUDA error or a corrupt engine does."""

    def __init__(self, inner: Engine) -> None:
        super().__init__(inner)
        self.release.set()
        self.broken = threading.Event()

    def step(self, frames: np.ndarray, state: np.ndarray) -> EngineOutput:
        if self.broken.is_set():
            raise RuntimeError("CUDA error: an illegal memory access was encountered (simulated)")
        return self.inner.step(frames, state)


async def _wait_for_health(target: str, expected: int, timeout_s: float = 5.0) -> list[int]:
    """Poll liveness and readiness until both are ``expected`` (or the timeout passes); return the last pair."""
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = [await _health(target, name) for name in (LIVENESS_SERVICE, "")]
        if statuses == [expected, expected] or time.monotonic() > deadline:
            return statuses
        await asyncio.sleep(0.05)


def test_a_model_that_keeps_failing_fails_liveness_and_readiness_until_a_call_succeeds(start_server, caplog):
    """``--model-failure-limit`` failed model calls in a row turn liveness and readiness NOT_SERVING (logged once,
    exported as ``slotstream_model_failing``); the next call that succeeds turns them SERVING again."""
    engines: list[BrokenEngine] = []

    def factory(config: ServiceConfig) -> Engine:
        engines.append(BrokenEngine(default_engine_factory(config)))
        return engines[-1]

    server = start_server(engine_factory=factory, model_failure_limit=3)
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    frames = make_video(seed=5, frames=8)

    async def scenario():
        statuses = {}
        async with Client(server.target) as client:
            stream = await client.open()
            assert isinstance(await stream.process(frames[0]), FrameResult)  # first_step works
            engines[0].broken.set()
            failed = [await stream.process(frame) for frame in frames[1:3]]
            statuses["below_limit"] = [await _health(server.target, name) for name in (LIVENESS_SERVICE, "")]
            failed += [await stream.process(frame) for frame in frames[3:6]]  # the limit, and beyond it
            statuses["failing"] = await _wait_for_health(server.target, not_serving)
            statuses["metric_failing"] = server.metric("slotstream_model_failing")
            statuses["metric_live"] = server.metric("slotstream_live")
            engines[0].broken.clear()
            recovered = await stream.process(frames[6])
            statuses["recovered"] = await _wait_for_health(server.target, serving)
            await stream.close()
        return statuses, failed, recovered

    with caplog.at_level(logging.WARNING, logger="service.watchdog"):
        statuses, failed, recovered = run(scenario())
    assert all(isinstance(a, FrameError) and a.code == ErrorCode.INFERENCE_FAILED for a in failed), failed
    assert statuses["below_limit"] == [serving, serving]
    assert statuses["failing"] == [not_serving, not_serving]
    assert statuses["metric_failing"] == 1 and statuses["metric_live"] == 0
    assert isinstance(recovered, FrameResult) and recovered.frame_index == 6
    assert statuses["recovered"] == [serving, serving]
    assert server.metric("slotstream_model_failing") == 0 and server.metric("slotstream_ready") == 1
    assert server.metric("slotstream_live") == 1
    messages = [record.getMessage() for record in caplog.records if record.name == "service.watchdog"]
    assert sum("model failing" in m for m in messages) == 1, messages
    assert sum("model recovered" in m for m in messages) == 1, messages


def test_the_event_loop_heartbeat_metric_keeps_time(start_server):
    """Probes that read metrics (TLS deployments) judge the event loop by this gauge."""
    server = start_server()
    first = server.metric("slotstream_event_loop_heartbeat_seconds")
    assert abs(first - time.time()) < 5
    deadline = time.monotonic() + 10
    while server.metric("slotstream_event_loop_heartbeat_seconds") <= first:  # it beats every second
        assert time.monotonic() < deadline, "the heartbeat did not move in 10 s"
        time.sleep(0.1)


def test_metrics_endpoint_exposes_the_service_metrics(start_server):
    server = start_server(metrics_listen="127.0.0.1:0")
    run(_one_frame(server.target))
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.server.metrics_port}/metrics", timeout=5).read().decode()
    for name in (
        "slotstream_streams_active",
        "slotstream_streams_opened_total",
        "slotstream_streams_released_total",
        "slotstream_frames_total",
        "slotstream_frames_dropped_total",
        "slotstream_batch_size_bucket",
        "slotstream_queue_seconds_bucket",
        "slotstream_inference_seconds_bucket",
        "slotstream_e2e_seconds_bucket",
        "slotstream_state_bytes",
        "slotstream_ready 1.0",
    ):
        assert name in body, name
    assert 'slotstream_frames_total{model="tiny",outcome="result"} 1.0' in body


async def _one_frame(target: str, **client_kwargs) -> FrameResult:
    async with Client(target, **client_kwargs) as client:
        stream = await client.open(StreamOptions())
        result = await stream.process(make_video(32, 1)[0])
        await stream.close()
        return result


def test_reflection_lists_the_services(server):
    async def scenario():
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            async for reply in stub.ServerReflectionInfo(iter([request])):
                return {service.name for service in reply.list_services_response.service}

    assert {"slotstream.v1.Perception", "grpc.health.v1.Health"} <= run(scenario())


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"tls_cert": "server.pem", "tls_key": "client.key"}, "--tls-cert .*server.pem / --tls-key .*client.key"),
        ({"tls_cert": "san.cnf", "tls_key": "server.key"}, "not a PEM certificate chain"),
        ({"tls_cert": "server.pem", "tls_key": "server.key", "tls_client_ca": "server.key"}, "--tls-client-ca"),
    ],
)
def test_unusable_tls_files_are_named_before_the_server_listens(certificates, files, fragment):
    """A mismatched key or a file that is not PEM is reported with its flag, not as a port that cannot be bound."""
    config = ServiceConfig(**{flag: certificates / name for flag, name in files.items()})
    with pytest.raises(ConfigError, match=fragment):
        config.check_files()


def test_tls_and_mutual_tls(start_server, certificates):
    d = certificates
    tls_server = start_server(tls_cert=d / "server.pem", tls_key=d / "server.key")
    assert isinstance(run(_one_frame(tls_server.target, tls=TlsFiles(root_ca=d / "ca.pem"))), FrameResult)

    mtls_server = start_server(tls_cert=d / "server.pem", tls_key=d / "server.key", tls_client_ca=d / "ca.pem")
    client_tls = TlsFiles(root_ca=d / "ca.pem", cert=d / "client.pem", key=d / "client.key")
    assert isinstance(run(_one_frame(mtls_server.target, tls=client_tls)), FrameResult)
    with pytest.raises(StreamError) as refused:  # no client certificate
        run(_one_frame(mtls_server.target, tls=TlsFiles(root_ca=d / "ca.pem")), timeout=20)
    assert refused.value.status == grpc.StatusCode.UNAVAILABLE


def test_the_cli_checks_the_server_certificate_against_the_name_it_is_given(start_server, certificates, capsys):
    """The certificate names localhost and 127.0.0.1: ``--tls-server-name`` replaces the target host in the check."""
    d = certificates
    tls_server = start_server(tls_cert=d / "server.pem", tls_key=d / "server.key")
    port = tls_server.target.rsplit(":", 1)[1]
    flags = ["--target", f"127.0.0.1:{port}", "--tls-ca", str(d / "ca.pem")]
    assert client_main(["describe", *flags, "--tls-server-name", "localhost"]) == 0
    assert client_main(["describe", *flags, "--tls-server-name", "elsewhere.example"]) == 1
    error = capsys.readouterr().err
    assert f"cannot reach a server at 127.0.0.1:{port}" in error and "Hostname Verification" in error, error


def test_waiting_for_a_server_that_cannot_be_reached_says_why(start_server, certificates):
    """A plaintext client at a TLS server: the timeout quotes the failing status, not only the wait."""
    d = certificates
    tls_server = start_server(tls_cert=d / "server.pem", tls_key=d / "server.key")

    async def wait() -> None:
        async with Client(tls_server.target) as client:
            await client.wait_ready(1.0)

    with pytest.raises(TimeoutError, match=r"is not serving after 1.0 s \(last: UNAVAILABLE: .+\)"):
        run(wait())


def test_raw_1080p_frames_fit_the_default_message_limit(server):
    """The default 16 MiB limit takes a raw 1920x1080x3 frame (6,220,800 bytes; gRPC's own default is 4 MiB)."""
    frame = np.zeros((1080, 1920, 3), np.uint8)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            result = await stream.process(frame)
            await stream.close()
            return result

    assert isinstance(run(scenario()), FrameResult)


def test_a_raw_frame_too_large_for_one_message_is_refused_by_the_client_and_the_stream_goes_on(server):
    """A raw 4K frame (24.9 MB) would make gRPC end the whole call with RESOURCE_EXHAUSTED; the client refuses
    one that does not fit as PNG either (noise) before sending, naming the remedy, and the same stream then serves
    the frame as JPEG."""
    frame = np.random.default_rng(0).integers(0, 256, (2160, 3840, 3), dtype=np.uint8)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            with pytest.raises(ValueError, match=r"frame 0: the RAW_RGB8 3840x2160 image .*jpeg_quality"):
                await stream.send(frame)
            result = await stream.process(frame, jpeg_quality=80)
            await stream.close()
            return result

    assert isinstance(run(scenario()), FrameResult)


class FailingWarmUpEngine(SlowEngine):
    """Warm-up fails, as a CUDA out-of-memory or an ONNX Runtime / TensorRT build failure does."""

    def warmup(self, batch_sizes):
        raise RuntimeError("CUDA out of memory (simulated)")


def test_a_failed_warm_up_is_logged_and_ends_serve_with_an_error(model_dir, caplog):
    """``serve`` (what ``python -m service`` runs) does not sit NOT_SERVING forever: it logs the failure, stops
    the server and raises, so the process exits non-zero."""

    def factory(config: ServiceConfig) -> Engine:
        return FailingWarmUpEngine(default_engine_factory(config))

    expected = r"failed to warm up: RuntimeError: CUDA out of memory \(simulated\)"
    with caplog.at_level(logging.ERROR, logger="service.server"), pytest.raises(RuntimeError, match=expected):
        asyncio.run(asyncio.wait_for(serve(make_config(model_dir), factory), 30))
    assert "warm-up failed" in caplog.text and "CUDA out of memory (simulated)" in caplog.text


def test_the_load_generator_connects_with_tls(start_server, certificates, tmp_path):
    """The sizing instructions load a TLS deployment's pods (deploy/README.md): --tls-* as the client takes them."""
    from service.bench.__main__ import main as bench_main

    d = certificates
    server = start_server(tls_cert=d / "server.pem", tls_key=d / "server.key", tls_client_ca=d / "ca.pem")
    out = tmp_path / "load.json"
    flags = ["--tls-ca", str(d / "ca.pem"), "--tls-cert", str(d / "client.pem"), "--tls-key", str(d / "client.key")]
    args = ["--target", server.target, "--streams", "1", "--frames", "3", "--size", "32", "--json", str(out)]
    assert bench_main([*args, *flags]) == 0
    report = json.loads(out.read_text())
    (result,) = report["remote"]
    assert result["results"] == 3 and result["spec"]["tls"] is True and report["settings"]["tls"] is True
