"""The Admin service over gRPC on loopback: operators list the streams a server holds, with counts that add up
to the frames each stream sent and agree with the server's metrics; access needs an admin token of its own."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
import time

import grpc
import pytest
from service_helpers import ADMIN_TOKEN as ADMIN
from service_helpers import make_video, raw, raw_exchange, results_of, run, slow_factory, wait_until

from service import wire
from service.bench.spawn import SpawnedServer
from service.client import Client, FrameDropped, FrameError, FrameResult, StreamError, StreamOptions
from service.client.__main__ import main
from service.errors import ErrorCode
from service.generated import pb
from service.stream_stats import StreamStatus
from service.types import DropReason, EncodedImage, FrameRequest, ImageEncoding

CLIENT = "client-0123456789abcdefghijklmno"


def test_each_stream_is_listed_with_counts_that_add_up_and_agree_with_the_metrics(start_server, admin_file):
    server = start_server(admin_token_file=admin_file)
    clip = make_video(seed=3, frames=6)
    broken = EncodedImage(ImageEncoding.RAW_RGB8, clip[0].tobytes()[:-3], 30, 40, 3)

    async def scenario():
        async with Client(server.target) as client, Client(server.target, token=ADMIN) as admin:
            first = await client.open(StreamOptions(max_staleness_s=5.0, live=False))
            second = await client.open(model="")
            answers = []
            for index, frame in enumerate(clip):  # frames 1 and 3 stale, frame 4 broken
                captured = time.time_ns() - (30 * 10**9 if index in (1, 3) else 0)
                await first.send(broken if index == 4 else frame, capture_time_ns=captured)
                answers.append(await first.receive())
            for frame in clip[:2]:
                await second.send(frame, capture_time_ns=0)  # unknown capture time
                await second.receive()
            listed = await admin.list_streams()
            one = await admin.stream_stats(second.stream_id)
            await first.close()
            await second.close()
            return first.stream_id, second.stream_id, answers, listed, one

    first_id, second_id, answers, listed, one = run(scenario())
    assert [s.stream_id for s in listed] == [first_id, second_id], "the oldest first"
    first = listed[0]
    assert first.status == StreamStatus.ATTACHED
    assert first.peer.startswith("ipv4:127.0.0.1:")
    assert first.options.max_staleness_s == 5.0, "the effective options"
    assert first.frames_received == 6
    assert first.frames_processed == sum(isinstance(a, FrameResult) for a in answers) == 3
    assert first.frames_dropped == 2 and first.dropped_by_reason == {DropReason.STALE: 2}
    assert first.frame_errors == 1 and first.errors_by_code == {ErrorCode.WRONG_RAW_SIZE: 1}
    assert (first.frames_in_flight, first.frames_unanswered) == (0, 0)
    assert first.last_frame_index == 5
    assert 0 < first.latency_p50_ms <= first.latency_p99_ms
    results = [a for a in answers if isinstance(a, FrameResult)]
    assert first.latency_p99_ms == max(r.latency.total_ms for r in results), "p99 of 3 results: the largest"
    assert 0 < first.capture_age_p50_ms < 5_000, "results were answered within moments of their capture"
    assert first.results_per_s > 0
    assert first.state_bytes > 0
    assert server.metric("slotstream_frames_dropped_total", {"reason": "stale"}) == first.frames_dropped
    assert server.metric("slotstream_frame_errors_total", {"code": "wrong_raw_size"}) == first.frame_errors
    assert one.stream_id == second_id and one.frames_processed == 2 and one.last_frame_index == 1
    assert one.capture_age_p50_ms == 0, "no frame of it carried a capture time"
    assert all(isinstance(a, FrameResult | FrameDropped | FrameError) for a in answers)


def test_a_detached_stream_is_listed_as_detached_with_the_frame_its_call_left_unanswered(start_server, admin_file):
    factory, _ = slow_factory(delay_s=2.0)  # the frame is still in the model when its connection drops
    server = start_server(admin_token_file=admin_file, engine_factory=factory, warmup=False, inline_model_max_ms=0)
    clip = make_video(seed=4, frames=2)

    async def scenario():
        client = Client(server.target)
        stream = await client.open(StreamOptions(resume_window_s=60.0))
        await stream.send(clip[0])
        async with Client(server.target, token=ADMIN) as admin:
            await _until(admin, stream.stream_id, lambda s: s.frames_in_flight == 1)
            await client.close()  # the connection drops with the frame in the model
            detached = await _until(admin, stream.stream_id, lambda s: s.status == StreamStatus.DETACHED)
        return detached

    detached = run(scenario())
    assert detached.detached_s >= 0 and detached.frames_received == 1
    assert (detached.frames_in_flight, detached.frames_unanswered) == (0, 1)
    assert detached.frames_received == (
        detached.frames_processed
        + detached.frames_dropped
        + detached.frame_errors
        + detached.frames_in_flight
        + detached.frames_unanswered
    )


async def _until(admin, stream_id, condition, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        stats = await admin.stream_stats(stream_id)
        if condition(stats) or time.monotonic() > deadline:
            assert condition(stats), stats
            return stats
        await asyncio.sleep(0.05)


def test_unknown_streams_and_models_are_refused_by_name(start_server, admin_file):
    server = start_server(admin_token_file=admin_file)

    async def scenario():
        async with Client(server.target, token=ADMIN) as admin:
            with pytest.raises(StreamError) as unknown_stream:
                await admin.stream_stats("no-such-stream")
            with pytest.raises(StreamError) as unknown_model:
                await admin.list_streams("no-such-model")
            return unknown_stream.value, unknown_model.value, await admin.list_streams("")

    unknown_stream, unknown_model, listed = run(scenario())
    assert unknown_stream.status == grpc.StatusCode.NOT_FOUND and unknown_stream.code == ErrorCode.UNKNOWN_STREAM
    assert "'no-such-stream'" in unknown_stream.message
    assert unknown_model.status == grpc.StatusCode.NOT_FOUND and unknown_model.code == ErrorCode.UNKNOWN_MODEL
    assert listed == []
    assert server.metric("slotstream_calls_refused_total", {"code": "unknown_stream"}) == 1


def test_without_an_admin_token_file_the_admin_service_is_off_and_says_how_to_turn_it_on(start_server):
    server = start_server()

    async def scenario():
        async with Client(server.target, token=ADMIN) as admin:
            with pytest.raises(StreamError) as off:
                await admin.list_streams()
            return off.value

    off = run(scenario())
    assert off.status == grpc.StatusCode.PERMISSION_DENIED and off.code == ErrorCode.ADMIN_API_OFF
    assert "--admin-token-file" in off.message
    assert server.metric("slotstream_calls_refused_total", {"code": "admin_api_off"}) == 1


def test_client_and_admin_tokens_grant_only_their_own_calls(start_server, admin_file, tmp_path):
    clients = tmp_path / "client-tokens"
    clients.write_text(f"{CLIENT}\n")
    server = start_server(admin_token_file=admin_file, auth_token_file=clients)
    frame = make_video(seed=1, frames=1)[0]

    async def refused(token, call):
        async with Client(server.target, token=token) as client:
            with pytest.raises(StreamError) as error:
                await call(client)
            return error.value

    async def scenario():
        client_on_admin = await refused(CLIENT, lambda c: c.list_streams())
        nothing_on_admin = await refused(None, lambda c: c.stream_stats("x"))
        admin_on_stream = await refused(ADMIN, lambda c: c.open())
        admin_on_describe = await refused(ADMIN, lambda c: c.describe())
        async with Client(server.target, token=CLIENT) as client, Client(server.target, token=ADMIN) as admin:
            stream = await client.open()
            await stream.send(frame)
            await stream.receive()
            listed = await admin.list_streams()
            await stream.close()
        return [client_on_admin, nothing_on_admin, admin_on_stream, admin_on_describe], listed

    refusals, listed = run(scenario())
    for error in refusals:
        assert error.status == grpc.StatusCode.UNAUTHENTICATED and error.code == ErrorCode.UNAUTHENTICATED, error
    for error in refusals[:2]:
        assert "Admin calls need an admin token, one of the server's --admin-token-file" in error.message
    for error in refusals[2:]:
        assert "is an admin token" in error.message and "need a client token" in error.message, error.message
    assert [s.frames_processed for s in listed] == [1]


def test_the_streams_command_prints_a_table_one_stream_and_json(start_server, admin_file, capsys):
    server = start_server(admin_token_file=admin_file)
    clip = make_video(seed=2, frames=3)

    async def stream_and_leave():
        client = Client(server.target)
        stream = await client.open(StreamOptions(resume_window_s=60.0))
        for frame in clip:
            await stream.send(frame)
            await stream.receive()
        return stream.stream_id  # the call ends with this loop, unclosed: the stream waits detached

    stream_id = run(stream_and_leave())
    manager = server.server.manager
    wait_until(lambda: server.on_loop(lambda: manager.sessions[stream_id].owner is None))
    flags = ["--target", server.target, "--token-file", str(admin_file)]
    assert main(["streams", *flags]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["STREAM", "MODEL", "PEER", "STATUS"] and "UNANSWERED" in table[0]
    assert len(table) == 2 and table[1].startswith(stream_id) and " detached " in table[1]
    assert main(["streams", *flags, "--stream", stream_id]) == 0
    details = capsys.readouterr().out
    assert f"stream_id: {stream_id}" in details and "frames_processed: 3" in details
    assert "dropped_by_reason: -" in details and "resume_window_s=60.0" in details
    assert main(["streams", *flags, "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["stream_id"] == stream_id and listed["status"] == "detached"
    assert listed["frames_received"] == 3 and listed["last_frame_index"] == 2
    assert main(["streams", "--target", server.target]) == 1, "without the admin token"
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert main(["streams", *flags, "--stream", stream_id, "--model", "other"]) == 2
    assert "runs model 'tiny', not --model 'other'" in capsys.readouterr().err
    assert main(["streams", *flags, "--stream", "gone"]) == 1
    assert "UNKNOWN_STREAM" in capsys.readouterr().err


def test_an_admin_request_that_does_not_parse_is_refused_as_malformed(start_server, admin_file):
    server = start_server(admin_token_file=admin_file)
    not_utf8 = b"\x0a\x02\xff\xfe"  # field 1 (stream_id, a string) holding bytes that are not UTF-8

    async def scenario():
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = channel.unary_unary("/slotstream.v1.Admin/GetStreamStats")
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await call(not_utf8, metadata=(("authorization", f"Bearer {ADMIN}"),))
            return error.value.code(), dict(error.value.trailing_metadata() or ())

    status, trailer = run(scenario())
    assert status == grpc.StatusCode.INVALID_ARGUMENT
    assert trailer.get("slotstream-error-code") == "ERROR_CODE_MALFORMED_REQUEST"


def test_a_stream_taken_over_by_a_resume_counts_the_frame_its_old_call_left_unanswered(start_server, admin_file):
    factory, _ = slow_factory(delay_s=1.0)
    server = start_server(admin_token_file=admin_file, engine_factory=factory, warmup=False, inline_model_max_ms=0)
    clip = make_video(seed=6, frames=2)

    async def scenario():
        async with (
            Client(server.target) as old,
            Client(server.target) as new,
            Client(server.target, token=ADMIN) as admin,
        ):
            stream = await old.open(StreamOptions(resume_window_s=60.0))
            await stream.send(clip[0])
            await _until(admin, stream.stream_id, lambda s: s.frames_in_flight == 1)
            resumed = await new.resume(stream.stream_id, stream.opened.resume_token, None)
            await resumed.send(clip[0])
            await resumed.receive()
            stats = await admin.stream_stats(stream.stream_id)
            await resumed.close()
            return stats

    stats = run(scenario())
    assert stats.status == StreamStatus.ATTACHED
    assert (stats.frames_received, stats.frames_processed, stats.frames_unanswered) == (2, 1, 1)
    assert stats.frames_in_flight == 0


def test_frames_answered_before_a_half_close_count_as_answered(start_server, admin_file):
    """A client that ends its requests without a close still gets the answers of its last frames: they count as
    processed, not unanswered, and agree with the metrics."""
    server = start_server(admin_token_file=admin_file)
    open_request = pb.StreamRequest(open=pb.OpenStream(options=pb.StreamOptions(resume_window_s=60.0)))
    frames = [wire.request_to_proto(FrameRequest(index, raw(frame))) for index, frame in enumerate(make_video(7, 3))]

    async def scenario():
        responses, error = await raw_exchange(server.target, open_request, *frames)
        stream_id = responses[0].opened.stream_id
        async with Client(server.target, token=ADMIN) as admin:
            return responses, error, await _until(admin, stream_id, lambda s: s.status == StreamStatus.DETACHED)

    responses, error, stats = run(scenario())
    assert error is None and [r.WhichOneof("kind") for r in responses] == [
        "opened",
        "result",
        "result",
        "result",
        "closed",
    ]
    assert (stats.frames_received, stats.frames_processed, stats.frames_unanswered) == (3, 3, 0)
    assert server.metric("slotstream_frames_total", {"model": "tiny", "outcome": "result"}) == stats.frames_processed


def test_a_rotated_admin_token_file_is_taken_up_without_an_admin_call(start_server, admin_file, caplog):
    server = start_server(admin_token_file=admin_file)
    new = "admin-rotated-0123456789abcdefghij"
    with caplog.at_level(logging.INFO, logger="service.tokens"):
        staging = admin_file.with_name("admin-tokens.new")
        staging.write_text(f"{new}\n")
        staging.rename(admin_file)
        wait_until(lambda: any("reloaded the bearer tokens" in r.getMessage() for r in caplog.records), 10)

    async def with_token(token):
        async with Client(server.target, token=token) as admin:
            try:
                return await admin.list_streams()
            except StreamError as error:
                return error.code

    assert run(with_token(ADMIN)) == ErrorCode.UNAUTHENTICATED
    assert run(with_token(new)) == []


def test_an_operator_ends_a_stream_its_client_is_told_why_and_cannot_resume_it(start_server, admin_file):
    server = start_server(admin_token_file=admin_file)
    clip = make_video(seed=11, frames=3)

    async def scenario():
        async with Client(server.target) as client, Client(server.target, token=ADMIN) as admin:
            stream = await client.open(StreamOptions(resume_window_s=60.0))
            await results_of(stream, clip[:2])
            ended = await admin.end_stream(stream.stream_id, "camera 7\nsends black frames")
            with pytest.raises(StreamError) as told:
                await stream.process(clip[2])
            with pytest.raises(StreamError) as resumed:
                await client.resume(stream.stream_id, stream.opened.resume_token, 1)
            return ended, told.value, resumed.value, await admin.list_streams()

    ended, told, resumed, listed = run(scenario())
    assert ended.frames_processed == 2 and ended.status == StreamStatus.ATTACHED, "as it stood when it was ended"
    assert told.status == grpc.StatusCode.ABORTED and told.code == ErrorCode.ENDED_BY_OPERATOR
    assert "camera 7 sends black frames" in told.message and "do not resume it" in told.message
    assert resumed.code == ErrorCode.UNKNOWN_STREAM and "an operator ended it" in resumed.message
    assert listed == []
    assert server.metric("slotstream_streams_released_total", {"reason": "ended"}) == 1
    assert server.metric("slotstream_calls_refused_total", {"code": "ended_by_operator"}) == 0, "not a refusal"


def test_the_end_stream_command_ends_a_detached_stream(start_server, admin_file, capsys):
    server = start_server(admin_token_file=admin_file)

    async def leave_detached():
        client = Client(server.target)
        stream = await client.open(StreamOptions(resume_window_s=60.0))
        return stream.stream_id  # the call ends with this loop, unclosed

    stream_id = run(leave_detached())
    manager = server.server.manager
    wait_until(lambda: server.on_loop(lambda: manager.sessions[stream_id].owner is None))
    flags = ["--target", server.target, "--token-file", str(admin_file)]
    assert main(["end-stream", stream_id, *flags, "--reason", "left over"]) == 0
    assert f"stream_id: {stream_id}" in capsys.readouterr().out and server.session_count() == 0
    assert main(["end-stream", stream_id, *flags]) == 1
    assert "UNKNOWN_STREAM" in capsys.readouterr().err


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_streams_watch_prints_the_table_until_interrupted(start_server, admin_file, stop):
    server = start_server(admin_token_file=admin_file)
    command = [sys.executable, "-m", "service.client", "streams", "--target", server.target]
    command += ["--token-file", str(admin_file), "--watch", "0.2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        headings = []
        while len(headings) < 2:
            line = process.stdout.readline()
            assert line, f"the command ended: {process.stderr.read() if process.stderr else ''}"
            if "Ctrl-C to stop" in line:
                headings.append(line)
        process.send_signal(stop)
        assert process.wait(60) == 128 + stop  # 130 after Ctrl-C, 143 after SIGTERM
    finally:
        process.kill()
    assert all(heading.startswith(server.target) for heading in headings)
    assert main(["streams", "--target", server.target, "--watch", "1", "--json"]) == 2


def test_a_client_still_sending_when_its_stream_is_ended_is_told_so(model_dir, admin_file):
    """The call ends once the client stops writing (after a StreamClosed saying why), so a frame racing the end
    cannot turn the operator's end into a lost connection that invites a reconnect. (A server in a process of its
    own: in this one, the race's timing hides it.)"""
    clip = make_video(seed=13, frames=2)

    async def one_stream(client, admin):
        stream = await client.open(StreamOptions(resume_window_s=30.0))
        await results_of(stream, clip[:1])
        await admin.end_stream(stream.stream_id, "maintenance")
        with pytest.raises(StreamError) as told:
            await stream.process(clip[1])  # sent at once, racing the end
        return told.value

    async def scenario(target):
        async with Client(target) as client, Client(target, token=ADMIN) as admin:
            return [await one_stream(client, admin) for _ in range(25)]

    with SpawnedServer(model_dir, ["--admin-token-file", str(admin_file)], own_settings_only=True) as server:
        errors = run(scenario(server.target))
    for told in errors:
        assert (told.status, told.code) == (grpc.StatusCode.ABORTED, ErrorCode.ENDED_BY_OPERATOR), told
        assert not told.connection_lost and "maintenance" in told.message
