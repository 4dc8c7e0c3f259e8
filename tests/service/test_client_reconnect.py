"""A dropped connection, for the command line (``--reconnect``, and a message that says the connection was lost)
and for the Python API (a ``StreamError`` that says whether ``reconnect()`` can continue the stream), tested through
a TCP proxy between client and server whose connections the tests cut; and error codes shown by name."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image
from service_helpers import make_video, reference_outputs, run, slow_factory
from tcp_proxy import TakeOver, after_frame
from test_stream_service import assert_matches

from service.client import Client, FrameResult, StreamError, StreamOptions
from service.client.__main__ import main
from service.errors import ErrorCode


def _frames_folder(folder: Path, clip: list[np.ndarray]) -> Path:
    folder.mkdir()
    for index, frame in enumerate(clip):
        Image.fromarray(frame).save(folder / f"{index:04d}.png")  # lossless: the server sees the raw pixels
    return folder


def _assert_every_frame_once_and_exact(tmp_path: Path, clip: list[np.ndarray], model_dir: Path) -> None:
    """The JSON lines, slots and overlay of a run hold every frame once, in order, and the slots are those of an
    uninterrupted stream."""
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [line["frame_index"] for line in lines] == list(range(len(clip)))
    assert all(line["outcome"] == "result" for line in lines)
    with np.load(tmp_path / "slots.npz") as saved:
        assert saved["frame_index"].tolist() == list(range(len(clip)))
        reference = np.stack([slots for slots, _ in reference_outputs(model_dir, clip)])  # [T, K, D]
        np.testing.assert_allclose(saved["slots"], reference, atol=1e-5, rtol=0)
    with Image.open(tmp_path / "overlay.gif") as overlay:
        assert overlay.n_frames == len(clip)


def _outputs(tmp_path: Path) -> list[str]:
    return [f"--{flag}={tmp_path / name}" for flag, name in (("jsonl", "results.jsonl"), ("slots", "slots.npz"))] + [
        "--out",
        str(tmp_path / "overlay.gif"),
    ]


def test_the_stream_command_continues_exactly_after_a_dropped_connection(start_server, proxy_to, tmp_path, capsys):
    """The connection is cut after frame 10 of 40: with ``--reconnect`` the stream resumes where it stopped, and
    the overlay, JSON lines and slots hold every frame once, with the slots of an uninterrupted stream."""
    factory, _ = slow_factory(delay_s=0.02)
    server = start_server(engine_factory=factory)
    proxy = proxy_to(server.target)
    clip = make_video(seed=61, frames=40)
    folder = _frames_folder(tmp_path / "frames", clip)
    watcher = after_frame(server, 10, proxy.drop)
    code = main(["stream", str(folder), "--target", proxy.target, "--reconnect", "3", *_outputs(tmp_path)])
    watcher.join(30)
    error = capsys.readouterr().err
    assert code == 0, error
    assert proxy.drops == 1 and f"lost the connection to {proxy.target}" in error, error
    assert "continued the stream (resumed) after frame" in error, error
    _assert_every_frame_once_and_exact(tmp_path, clip, server.model_dir)


def test_a_dropped_connection_without_reconnect_is_reported_as_lost_not_as_ended_by_the_server(
    start_server, proxy_to, tmp_path, capsys
):
    factory, _ = slow_factory(delay_s=0.02)
    server = start_server(engine_factory=factory)
    proxy = proxy_to(server.target)
    folder = _frames_folder(tmp_path / "frames", make_video(seed=62, frames=40))
    watcher = after_frame(server, 5, proxy.drop)
    code = main(["stream", str(folder), "--target", proxy.target, *_outputs(tmp_path)])
    watcher.join(30)
    error = capsys.readouterr().err
    assert code == 1, error
    assert f"error: the connection to the server at {proxy.target} was lost after " in error, error
    assert "UNAVAILABLE" in error and "the run stopped (with --reconnect N a run continues" in error, error
    assert "the server ended" not in error and "reconnect()" not in error, error  # no Python API advice
    answered = int(error.split("was lost after ")[1].split(" of ")[0])
    # The drop comes once the server has run frame 5; with --window 4 the client has read at least frame 1's answer.
    assert 2 <= answered < 40 and len((tmp_path / "results.jsonl").read_text().splitlines()) == answered
    assert f"slots of {answered} frames saved to" in error, error


def test_with_reconnect_a_server_shutdown_continues_on_the_server_that_takes_over_the_target(
    start_server, proxy_to, tmp_path, capsys
):
    """The server behind the target drains after frame 10 (its clients get the state) and another one takes over
    the address: ``--reconnect`` continues the stream there from the hand-off, exactly."""
    factory, _ = slow_factory(delay_s=0.02)
    draining, replacement = start_server(engine_factory=factory), start_server()
    proxy = proxy_to(draining.target)
    clip = make_video(seed=63, frames=40)
    folder = _frames_folder(tmp_path / "frames", clip)
    take_over = TakeOver(proxy, draining, replacement)
    code = main(["stream", str(folder), "--target", proxy.target, "--reconnect", "6", *_outputs(tmp_path)])
    take_over.join()
    error = capsys.readouterr().err
    assert code == 0, error
    assert f"the server at {proxy.target} is shutting down" in error, error
    assert "continued the stream (handed_off) after frame" in error, error
    _assert_every_frame_once_and_exact(tmp_path, clip, draining.model_dir)


def test_with_reconnect_and_shared_memory_a_server_without_it_gets_the_later_frames_as_bytes(
    start_server, proxy_to, tmp_path, capsys
):
    """The shared-memory server behind the target drains and one without shared memory takes over the address:
    the stream continues there, the frames re-sent from the ring go with their pixels in the request and the later
    frames as bytes, all answered as by an uninterrupted stream, and the ring's segment is removed."""
    factory, _ = slow_factory(delay_s=0.02)
    draining, replacement = start_server(shared_memory=True, engine_factory=factory), start_server()
    proxy = proxy_to(draining.target)
    clip = make_video(seed=64, frames=30)
    folder = _frames_folder(tmp_path / "frames", clip)
    segments_before = set(os.listdir("/dev/shm"))
    take_over = TakeOver(proxy, draining, replacement)
    jsonl = tmp_path / "results.jsonl"
    command = ["stream", str(folder), "--target", proxy.target, "--shared-memory", "--window", "2"]
    main([*command, "--reconnect", "6", "--jsonl", str(jsonl)])
    take_over.join()
    error = capsys.readouterr().err
    assert "continued the stream (handed_off) after frame" in error, error
    assert "the server the stream continued on does not read shared memory for this client" in error, error
    outcomes = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["frame_index"] for line in outcomes] == list(range(len(clip)))
    assert all(line["outcome"] == "result" for line in outcomes), [o for o in outcomes if o["outcome"] != "result"]
    assert set(os.listdir("/dev/shm")) <= segments_before, "the ring is removed"


def test_with_reconnect_a_slow_drain_continues_on_another_server_over_a_new_connection(
    start_server, proxy_to, tmp_path, capsys
):
    """As above, but the draining server holds its drain open (a stream of another client waits detached for a
    resume) for longer than the tries take, refusing every call on the old connection: the tries after its
    ``SHUTTING_DOWN`` go out on a new connection, which the address now leads to the other server (as a Kubernetes
    Service sends new connections to the pods that are ready), and the stream continues there, exactly."""
    factory, _ = slow_factory(delay_s=0.02)
    draining, replacement = start_server(engine_factory=factory), start_server()
    proxy, waiting_client_path = proxy_to(draining.target), proxy_to(draining.target)
    clip = make_video(seed=64, frames=40)
    folder = _frames_folder(tmp_path / "frames", clip)

    async def leave_a_stream_detached() -> None:
        async with Client(waiting_client_path.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=60))
            await stream.process(clip[0])
            waiting_client_path.drop()  # its connection lost: the stream waits for a resume, holding the drain
            with pytest.raises(StreamError):
                await stream.process(clip[1])

    run(leave_a_stream_detached())
    take_over = TakeOver(proxy, draining, replacement, grace_s=20.0)
    started = time.monotonic()
    code = main(["stream", str(folder), "--target", proxy.target, "--reconnect", "3", *_outputs(tmp_path)])
    still_draining = take_over.draining()
    take_over.join()
    error = capsys.readouterr().err
    assert code == 0, error
    assert still_draining, f"the drain ended within the run ({time.monotonic() - started:.1f} s): nothing was tested"
    assert f"the server at {proxy.target} is shutting down" in error, error
    assert "continued the stream (handed_off) after frame" in error, error
    _assert_every_frame_once_and_exact(tmp_path, clip, draining.model_dir)


def test_with_reconnect_a_server_lost_without_a_shutdown_continues_from_the_last_answer_elsewhere(
    start_server, proxy_to, tmp_path, capsys
):
    """The server behind the target is cut off after frame 10 without draining (as a crashed one would be) and
    another one answers there: the stream cannot be resumed, so ``--reconnect`` continues it from the state its
    last answer carried (the run asks for the STATE output), exactly."""
    factory, _ = slow_factory(delay_s=0.02)
    lost, replacement = start_server(engine_factory=factory), start_server()
    proxy = proxy_to(lost.target)
    clip = make_video(seed=66, frames=40)
    folder = _frames_folder(tmp_path / "frames", clip)

    def cut_off() -> None:
        proxy.upstream = replacement.target
        proxy.drop()

    watcher = after_frame(lost, 10, cut_off)
    code = main(["stream", str(folder), "--target", proxy.target, "--reconnect", "3", *_outputs(tmp_path)])
    watcher.join(30)
    error = capsys.readouterr().err
    assert code == 0, error
    assert f"lost the connection to {proxy.target}" in error, error
    assert "continued the stream (handed_off) after frame" in error, error
    _assert_every_frame_once_and_exact(tmp_path, clip, lost.model_dir)


@pytest.mark.parametrize(
    ("replacement_token", "file_at_the_cut", "warning"),
    [("new", "new\n", False), ("old", "", True)],
    ids=["rotated", "half-written"],
)
def test_with_reconnect_the_token_file_is_read_again_before_each_try(
    start_server, proxy_to, tmp_path, capsys, replacement_token, file_at_the_cut, warning
):
    """The stream starts with the token ``old``, and the token file changes before the connection is lost. Rotated:
    the replacement server takes only ``new``, which the file then holds, and ``--reconnect`` reads it again and
    continues. Half-written (empty at that moment): ``--reconnect`` warns, keeps the token it read before, and
    continues."""
    old_tokens, replacement_tokens, client_tokens = tmp_path / "old", tmp_path / "replacement", tmp_path / "client"
    old_tokens.write_text("old\n")
    replacement_tokens.write_text(f"{replacement_token}\n")
    client_tokens.write_text("old\n")
    factory, _ = slow_factory(delay_s=0.02)
    lost = start_server(engine_factory=factory, auth_token_file=old_tokens)
    replacement = start_server(auth_token_file=replacement_tokens)
    proxy = proxy_to(lost.target)
    clip = make_video(seed=67, frames=30)
    folder = _frames_folder(tmp_path / "frames", clip)

    def change_the_file_and_cut_off() -> None:
        client_tokens.write_text(file_at_the_cut)
        proxy.upstream = replacement.target
        proxy.drop()

    watcher = after_frame(lost, 10, change_the_file_and_cut_off)
    command = ["stream", str(folder), "--target", proxy.target, "--token-file", str(client_tokens)]
    code = main([*command, "--reconnect", "3", *_outputs(tmp_path)])
    watcher.join(30)
    error = capsys.readouterr().err
    assert code == 0, error
    assert "continued the stream (handed_off) after frame" in error, error
    said = f"warning: --token-file {client_tokens} is empty; reconnecting with the token read before" in error
    assert said == warning, error
    _assert_every_frame_once_and_exact(tmp_path, clip, lost.model_dir)


def test_a_reconnect_that_fails_after_a_drain_points_at_the_hand_off_not_the_resume_window(start_server):
    """The server drains (the stream gets its state) and is gone: the reconnect that meets no server says the
    stream was handed off, to be continued from that state elsewhere, not that the server keeps it for its
    resume window."""
    server = start_server()
    clip = make_video(seed=68, frames=4)

    async def scenario() -> StreamError:
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            for frame in clip[:3]:
                await stream.process(frame)
            await asyncio.get_running_loop().run_in_executor(None, server.stop, 5.0)
            with pytest.raises(StreamError) as ended:
                await stream.process(clip[3])
            assert ended.value.code == ErrorCode.SHUTTING_DOWN and stream.handoff is not None
            with pytest.raises(StreamError) as failed:
                await stream.reconnect()
            return failed.value

    failed = run(scenario())
    assert failed.connection_lost, failed
    assert "shut down and handed it off" in str(failed) and "for 30 s" not in str(failed), failed


def test_reconnect_flags_are_checked(capsys):
    with pytest.raises(SystemExit):
        main(["stream", "synthetic:2", "--reconnect", "-1"])
    assert "argument --reconnect: must be a whole number >= 0, got '-1'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["stream", "synthetic:2", "--reconnect", "2", "--resume-window-s", "0"])
    assert "argument --resume-window-s: must be a finite number > 0, got '0'" in capsys.readouterr().err
    assert main(["stream", "synthetic:2", "--target", "127.0.0.1:1", "--resume-window-s", "10"]) == 2
    assert "--resume-window-s only matters with --reconnect N" in capsys.readouterr().err


# -- the Python API ------------------------------------------------------------------------------------------------


async def _reconnect(stream, tries: int = 5) -> None:
    """``stream.reconnect()``, tried again while it meets the lost connection itself (gRPC may put the new call on
    the dropped connection before it has noticed that it is gone)."""
    for _ in range(tries - 1):
        try:
            await stream.reconnect()
            return
        except StreamError as error:
            if not error.connection_lost:
                raise
            await asyncio.sleep(0.1)
    await stream.reconnect()


def test_a_lost_connection_says_reconnect_continues_the_stream_and_it_does(server, proxy_to):
    """Three drops, each met by the next process() (gRPC reports a write that meets the closed connection as
    INTERNAL at times, and the read after it as UNAVAILABLE): each time the error says the connection was lost and
    that reconnect() continues the stream, and retrying the frame after it gives an uninterrupted stream's
    results."""
    proxy = proxy_to(server.target)
    clip = make_video(seed=64, frames=8)

    async def scenario():
        async with Client(proxy.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            results, errors = [], []
            for index, frame in enumerate(clip):
                if index in (2, 4, 6):
                    proxy.drop()
                    with pytest.raises(StreamError) as lost:
                        await stream.process(frame)
                    errors.append(lost.value)
                    await _reconnect(stream)
                results.append(await stream.process(frame))
            await stream.close()
            return errors, results

    errors, results = run(scenario())
    for lost in errors:
        assert lost.connection_lost and lost.status == grpc.StatusCode.UNAVAILABLE and lost.code is None, lost
        assert "the connection was lost" in str(lost) and "for 30 s" in str(lost), lost
        assert "`await stream.reconnect()` continues it where it stopped" in str(lost), lost
        assert "on the command line `stream --reconnect N`" in lost.hint, lost.hint
        assert "`stream_frames(..., reconnect=N)`" in lost.hint, lost.hint
        assert lost.hint not in lost.message  # the message stays gRPC's own; the hint is apart
    assert all(isinstance(result, FrameResult) for result in results)
    assert_matches(results, reference_outputs(server.model_dir, clip))


def test_a_lost_connection_of_a_stream_without_a_resume_window_says_the_stream_is_lost(server, proxy_to):
    proxy = proxy_to(server.target)

    async def scenario():
        async with Client(proxy.target) as client:
            stream = await client.open()
            await stream.process(make_video(seed=65, frames=1)[0])
            proxy.drop()
            with pytest.raises(StreamError) as lost:
                await stream.process(make_video(seed=65, frames=1)[0])
            return lost.value

    lost = run(scenario())
    assert lost.connection_lost, lost
    assert "the connection was lost, and the stream with it" in str(lost), lost
    assert "StreamOptions(resume_window_s=...)" in str(lost), lost


def test_error_codes_are_shown_by_name(server):
    """``f"{error.code}"`` and ``str(error)`` name the code (the enum is an IntEnum, which printed the number)."""

    async def resume_unknown():
        async with Client(server.target) as client:
            with pytest.raises(StreamError) as refused:
                await client.resume("no-such-stream", "token", None)
            return refused.value

    refused = run(resume_unknown())
    assert refused.code == ErrorCode.UNKNOWN_STREAM
    assert f"{refused.code}" == str(refused.code) == "UNKNOWN_STREAM"
    assert str(refused).startswith(f"{refused.status.name} (UNKNOWN_STREAM): "), refused
    assert f"{refused.code:d}" == "24" and int(refused.code) == 24 and json.dumps(refused.code) == "24"
    assert str(StreamError(grpc.StatusCode.CANCELLED, None, "gone")) == "CANCELLED: gone"


def test_a_reconnect_cut_short_while_re_sending_keeps_every_unsent_frame_for_the_next(start_server):
    """The connection drops again while ``reconnect()`` re-sends the unanswered frames: the frames it had not
    re-sent yet stay unanswered, so the next ``reconnect()`` sends them and the stream goes on without a gap."""
    factory, engines = slow_factory()
    server = start_server(engine_factory=factory, inline_model_max_ms=0)
    clip = make_video(seed=98, frames=4)

    async def scenario():
        async with Client(server.target) as client:
            stream = await client.open(StreamOptions(resume_window_s=30))
            await stream.process(clip[0])
            for engine in engines:
                engine.delay_s = 0.5  # the next frames are still in the model when the connection drops
            for frame in clip[1:]:
                await stream.send(frame)
            stream.cancel()
            for engine in engines:
                engine.delay_s = 0.0
            write = stream._write
            writes = 0

            async def dropping_after_one_frame(request, done_writing=False):
                nonlocal writes
                writes += 1
                if writes == 3:  # the open, frame 1, then the connection drops under frame 2
                    stream.cancel()
                await write(request, done_writing)

            stream._write = dropping_after_one_frame
            with pytest.raises(StreamError):
                await stream.reconnect()
            left = stream.unanswered
            stream._write = write
            await stream.reconnect()
            answers = [await stream.receive() for _ in stream.unanswered]
            await stream.close()
            return left, answers

    left, answers = run(scenario())
    assert left == [1, 2, 3]
    assert [a.frame_index for a in answers] == [1, 2, 3] and all(isinstance(a, FrameResult) for a in answers)
    assert_matches(answers, reference_outputs(server.model_dir, clip)[1:])
