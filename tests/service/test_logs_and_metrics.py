"""The server's log line format, the standard metrics next to its own, and what an operator sees in the logs and
metrics: refusals and frame errors logged (rate-limited), stream lines, the start-up settings, series exported at
0, the post-processing histogram, and an idle reclaim that is not a refusal."""

from __future__ import annotations

import asyncio
import calendar
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from service_helpers import make_video, run

from service import wire
from service.client import Client, FrameError, FrameResult, StreamError, StreamOptions
from service.errors import ErrorCode
from service.logs import JsonFormatter, RateLimitedWarning, TextFormatter
from service.metrics import Metrics
from service.types import EncodedImage, ImageEncoding, OpenRequest

REPO = Path(__file__).resolve().parents[2]


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("service.test", logging.WARNING, __file__, 1, "refused %s", ("a call",), None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_a_utc_timestamp_and_the_extra_fields():
    record = _record(peer="ipv4:127.0.0.1:5000")
    entry = json.loads(JsonFormatter().format(record))
    assert (
        entry["message"] == "refused a call" and entry["level"] == "WARNING" and entry["peer"] == "ipv4:127.0.0.1:5000"
    )
    assert entry["time"].endswith("Z"), "a timestamp without a zone leaves log shippers guessing"
    stamped = calendar.timegm(time.strptime(entry["time"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert abs(stamped - record.created) < 1.0, (entry["time"], record.created)


def test_text_lines_append_the_extra_fields():
    formatter = TextFormatter("%(levelname)s %(message)s")
    assert formatter.format(_record(peer="p", why="no token")) == 'WARNING refused a call peer=p why="no token"'


def test_a_text_line_keeps_its_fields_before_its_traceback():
    try:
        raise RuntimeError("CUDA error: an illegal memory access")
    except RuntimeError:
        caught = sys.exc_info()
    record = logging.LogRecord("service.servicer", logging.ERROR, __file__, 1, "stream failed", None, caught)
    record.stream_id, record.peer = "cam-7", "ipv4:127.0.0.1:5000"
    lines = TextFormatter("%(levelname)s %(message)s").format(record).splitlines()
    assert lines[0] == "ERROR stream failed stream_id=cam-7 peer=ipv4:127.0.0.1:5000"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "RuntimeError: CUDA error: an illegal memory access"


def test_a_text_value_cannot_pose_as_more_fields():
    """A client-supplied value (a model name, a stream id in a message) with spaces and ``=`` is quoted (logfmt),
    so a line cannot be made to show a second ``peer=``; control characters are escaped."""
    formatter = TextFormatter("%(message)s")
    line = formatter.format(_record(model="x peer=ipv4:10.0.0.1:1 code=none", peer="ipv4:127.0.0.1:5000", esc="a\nb"))
    assert line == 'refused a call model="x peer=ipv4:10.0.0.1:1 code=none" peer=ipv4:127.0.0.1:5000 esc="a\\nb"'
    assert formatter.format(_record(empty="", quote='say "hi"')) == 'refused a call empty="" quote="say \\"hi\\""'


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the process collector reads /proc (Linux)")
def test_process_metrics_are_served_with_the_servers_own():
    metrics = Metrics()
    assert (metrics.registry.get_sample_value("process_resident_memory_bytes") or 0) > 0
    assert metrics.registry.get_sample_value("slotstream_ready") == 0


def test_the_heartbeat_is_fresh_before_the_loop_first_beats():
    """Metrics served before the event loop's first heartbeat give the time they were made, not 0, which an alert
    on the heartbeat's age (deploy/k8s/components/monitoring) would read as a loop blocked since 1970."""
    before = time.time()
    heartbeat = Metrics().registry.get_sample_value("slotstream_event_loop_heartbeat_seconds")
    assert heartbeat is not None and before <= heartbeat <= time.time()


def _warnings(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and r.getMessage() == message]


async def _refused_open(target: str, **kwargs) -> StreamError:
    async with Client(target) as client:
        with pytest.raises(StreamError) as refused:
            await client.open(**kwargs)
        return refused.value


async def _malformed_after_open(target: str) -> grpc.aio.AioRpcError:
    """Open a stream with the id ``cam-3``, then send bytes that are not a ``StreamRequest``."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.stream_stream("/slotstream.v1.Perception/Stream", request_serializer=lambda raw: raw)()
        await call.write(wire.request_to_proto(OpenRequest(stream_id="cam-3")).SerializeToString())
        await call.write(b"\xff\xff\xff\xff")
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for _ in call:
                pass
        return ended.value


def test_refused_calls_are_logged_with_peer_code_and_stream_id_at_most_once_per_interval_per_code(
    start_server, caplog
):
    """Before, only bearer-token refusals were logged: an unknown model, a mask too large, a request that does not
    parse or a stream over ``--max-streams`` were counted in ``/metrics`` and nowhere in the log."""
    server = start_server(max_streams=1)

    async def scenario():
        errors = [await _refused_open(server.target, model="nope") for _ in range(3)]
        errors.append(
            await _refused_open(server.target, stream_id="cam-7", options=StreamOptions(mask_size=(5000, 5000)))
        )
        async with Client(server.target) as client:
            holder = await client.open()
            errors.append(await _refused_open(server.target, stream_id="cam-9"))
            await holder.close()
        return errors, await _malformed_after_open(server.target)

    with caplog.at_level(logging.WARNING, logger="service"):
        errors, malformed = run(scenario())
    assert [e.code for e in errors] == [ErrorCode.UNKNOWN_MODEL] * 3 + [
        ErrorCode.INVALID_OPEN,
        ErrorCode.TOO_MANY_STREAMS,
    ]
    assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert server.metric("slotstream_calls_refused_total", {"code": "unknown_model"}) == 3
    lines = {r.code: r for r in _warnings(caplog, "refused a call")}
    assert len(_warnings(caplog, "refused a call")) == len(lines) == 4, "one line per code within the interval"
    assert set(lines) == {"unknown_model", "invalid_open", "too_many_streams", "malformed_request"}
    for line in lines.values():
        assert line.peer.startswith("ipv4:127.0.0.1:") and line.method == "/slotstream.v1.Perception/Stream"
        assert line.refusals == 1
    assert "unknown model 'nope'" in lines["unknown_model"].detail and lines["unknown_model"].stream_id == ""
    assert lines["invalid_open"].stream_id == "cam-7" and "5000x5000" in lines["invalid_open"].detail
    assert lines["too_many_streams"].stream_id == "cam-9"
    assert lines["malformed_request"].stream_id == "cam-3", "the stream the call had opened"


def test_frame_errors_are_logged_once_per_interval_per_code_for_all_streams_together(server, caplog):
    """One bad camera (or many) must not flood the log, and before, frame errors were not logged at all."""
    bad = EncodedImage(ImageEncoding.JPEG, b"not a jpeg")

    async def camera(stream_id: str):
        async with Client(server.target) as client:
            stream = await client.open(stream_id=stream_id)
            answers = [await stream.process(bad) for _ in range(3)]
            await stream.close()
            return answers

    async def scenario():
        return [*await camera("cam-1"), *await camera("cam-2")]

    with caplog.at_level(logging.WARNING, logger="service"):
        answers = run(scenario())
    assert all(isinstance(a, FrameError) and a.code == ErrorCode.UNDECODABLE_IMAGE for a in answers)
    assert server.metric("slotstream_frame_errors_total", {"code": "undecodable_image"}) == 6
    (line,) = _warnings(caplog, "frame rejected")
    assert line.code == "undecodable_image" and line.stream_id == "cam-1" and line.frame_index == 0
    assert line.peer.startswith("ipv4:127.0.0.1:") and "not a JPEG" in line.detail and line.frames == 1


def test_a_rate_limited_warning_says_how_many_events_its_line_stands_for(caplog):
    now = [0.0]
    warn = RateLimitedWarning(logging.getLogger("service.test"), "refused", "refusals", 10.0, lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="service.test"):
        logged = []
        for at, key in ((0, "a"), (1, "a"), (2, "a"), (3, "b"), (9.9, "a"), (10, "a"), (11, "a"), (20, "a")):
            now[0] = at
            logged.append(warn(key, peer=f"p{at}"))
    assert logged == [True, False, False, True, False, True, False, True]
    assert [(r.peer, r.refusals) for r in caplog.records] == [("p0", 1), ("p3", 1), ("p10", 4), ("p20", 2)]


def test_stream_lines_carry_the_peer_options_resume_window_frames_and_duration(server, caplog):
    frames = make_video(seed=5, frames=3)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=7, mask_size=(6, 8)), stream_id="cam-5")
            for frame in frames:
                assert isinstance(await stream.process(frame), FrameResult)
            await stream.close()

    with caplog.at_level(logging.INFO, logger="service.sessions"):
        run(scenario())
    (opened,) = [r for r in caplog.records if r.getMessage() == "stream opened"]
    (released,) = [r for r in caplog.records if r.getMessage() == "stream released"]
    assert opened.stream_id == released.stream_id == "cam-5"
    assert opened.peer.startswith("ipv4:127.0.0.1:") and opened.resume_window_s == 7
    assert opened.options["mask_size"] == [6, 8] and opened.options["outputs"] == ["segmentation", "slots"]
    assert opened.options["idle_timeout_s"] == server.server.config.idle_timeout_s
    assert opened.options["frame_fit"] == "stretch", "the server's default, made explicit"
    assert released.reason == "closed" and released.frames == 3 and 0 <= released.duration_s < 60


def test_an_idle_reclaim_is_counted_as_released_not_as_a_refused_call(start_server, caplog):
    """Alerts on refused calls must not fire on the server's own clean-up; a resume refused because the stream
    expired is still a refusal."""
    server = start_server(idle_timeout_s=3.0)  # long enough that a stall before the first frame cannot expire it
    frame = make_video(seed=7, frames=1)[0]

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            await stream.process(frame)
            with pytest.raises(StreamError) as reclaimed:
                await asyncio.wait_for(stream.receive(), 10)
            refused_after_reclaim = server.metric("slotstream_calls_refused_total", {"code": "stream_expired"})
            with pytest.raises(StreamError) as resumed:
                await stream.reconnect()
            return reclaimed.value, refused_after_reclaim, resumed.value

    with caplog.at_level(logging.WARNING, logger="service"):
        reclaimed, refused_after_reclaim, resumed = run(scenario())
    assert reclaimed.code == resumed.code == ErrorCode.STREAM_EXPIRED
    assert server.metric("slotstream_streams_released_total", {"reason": "idle"}) == 1
    assert refused_after_reclaim == 0, "the idle reclaim was counted as a refused call"
    assert server.metric("slotstream_calls_refused_total", {"code": "stream_expired"}) == 1, "the refused resume"
    (line,) = _warnings(caplog, "refused a call")
    assert line.code == "stream_expired" and "expired" in line.detail


def test_start_up_logs_the_effective_settings_in_one_line(start_server, caplog):
    with caplog.at_level(logging.INFO, logger="service.server"):
        server = start_server(
            auth_token="s3cret",
            max_streams=7,
            max_streams_per_client=2,
            max_batch_size=4,
            decode_threads=3,
            idle_timeout_s=40.0,
            max_idle_timeout_s=90.0,
            max_resume_window_s=25.0,
            max_pending_frames=3,
            max_buffered_reply_bytes=5_000_000,
            max_message_bytes=3_000_000,
            max_image_pixels=1_000_000,
            max_queue_delay_ms=1.5,
            grace_period_s=4.0,
            model_stall_timeout_s=30.0,
            inline_model_max_ms=12.0,
            resume_history=5,
            open_timeout_s=3.0,
            model_failure_limit=6,
            jpeg_damage_check=False,
        )
    (line,) = [r for r in caplog.records if r.getMessage() == "settings"]
    # every other setting under its own name, max_calls as resolved, the token never
    assert (line.resume_history, line.open_timeout_s, line.model_failure_limit) == (5, 3.0, 6)
    assert line.jpeg_damage_check is False and line.max_calls == server.server.config.resolved_max_calls > 0
    assert (line.log_level, line.onnx_graph_optimization, line.tensorrt_workspace_mb) == (
        server.server.config.log_level,
        server.server.config.onnx_graph_optimization,
        server.server.config.tensorrt_workspace_mb,
    )
    assert not hasattr(line, "auth_token") and "s3cret" not in json.dumps(line.__dict__, default=str)
    card = server.server.manager.runners["tiny"].card
    assert line.listen == server.target and line.metrics == "off"
    assert (line.backend, line.device, line.model, line.model_version) == ("torch", "cpu", "tiny", card.version)
    assert line.model_dir == str(server.model_dir)
    assert (line.model_threads, line.model_instances, line.decode_threads) == (0, server.model_instances(), 3)
    assert (line.tls, line.auth, line.max_streams, line.max_batch_size) == ("off", "on", 7, 4)
    assert line.max_streams_per_client == 2
    assert line.frame_fit == "stretch"
    assert (line.idle_timeout_s, line.max_idle_timeout_s, line.max_resume_window_s) == (40.0, 90.0, 25.0)
    assert (line.max_pending_frames, line.max_buffered_reply_bytes) == (3, 5_000_000)
    assert (line.max_message_bytes, line.max_image_pixels, line.max_queue_delay_ms) == (3_000_000, 1_000_000, 1.5)
    assert (line.grace_period_s, line.model_stall_timeout_s, line.inline_model_max_ms) == (4.0, 30.0, 12.0)
    assert "s3cret" not in caplog.text
    (loaded,) = [r for r in caplog.records if r.getMessage() == "model loaded"]
    assert (loaded.model, loaded.model_version, loaded.backend) == ("tiny", card.version, "torch")  # as documented


def test_labelled_counters_are_exported_at_zero_before_their_first_event(server):
    """Error-ratio alerts need a series to divide before the first error."""
    for name, labels in (
        ("slotstream_calls_refused_total", {"code": "unknown_model"}),
        ("slotstream_calls_refused_total", {"code": "internal"}),
        ("slotstream_calls_refused_total", {"code": "unauthenticated"}),
        ("slotstream_open_rejected_total", {"code": "too_many_streams"}),
        ("slotstream_frame_errors_total", {"code": "undecodable_image"}),
        ("slotstream_frames_dropped_total", {"reason": "superseded"}),
        ("slotstream_frames_total", {"model": "tiny", "outcome": "error"}),
        ("slotstream_streams_opened_total", {"model": "tiny", "kind": "handed_off"}),
        *(("slotstream_streams_released_total", {"reason": r}) for r in ("closed", "idle", "drained", "error")),
    ):
        assert server.gauge(name, labels) == 0, (name, labels)
    exported = {s.labels.get("code") for m in server.server.metrics.calls_refused.collect() for s in m.samples}
    assert "shutting_down" not in exported and "taken_over" not in exported, "the server's own ends are not refusals"


def test_each_result_is_observed_in_every_stage_histogram_including_postprocess(server):
    """The stage histograms take one observation per result (the help text says so for inference, whose
    observations repeat a batched call once per frame); post-processing had no histogram at all."""
    frames = make_video(seed=9, frames=3)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open()
            for frame in frames:
                await stream.process(frame)
            await stream.close()

    run(scenario())
    for stage in ("decode", "queue", "inference", "postprocess", "e2e"):
        assert server.metric(f"slotstream_{stage}_seconds_count", {"model": "tiny"}) == 3, stage
    assert server.metric("slotstream_postprocess_seconds_sum", {"model": "tiny"}) > 0
    documentation = {m.name: m.documentation for m in server.server.metrics.registry.collect()}
    assert "observed B times" in documentation["slotstream_inference_seconds"]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_python_warnings_are_log_records(fmt: str) -> None:
    """A plugin's version warning in a JSON log is one JSON line, not two raw lines that log pipelines drop."""
    script = (
        "import warnings\n"
        "from plugins.pretrained import PluginVersionWarning\n"
        "from service.logs import configure_logging\n"
        f"configure_logging('INFO', {fmt!r})\n"
        "warnings.warn('model.json: saved with plugin version 1.0', PluginVersionWarning)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    (line,) = done.stderr.splitlines()
    if fmt == "json":
        record = json.loads(line)
        assert record["level"] == "WARNING" and record["logger"] == "py.warnings"
        assert record["message"] == "model.json: saved with plugin version 1.0"
        assert record["category"] == "PluginVersionWarning" and record["source"].startswith("<string>:")
    else:
        assert "WARNING py.warnings: model.json: saved with plugin version 1.0 category=PluginVersionWarning" in line
