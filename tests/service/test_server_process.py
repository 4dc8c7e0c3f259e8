"""``python -m service`` as a real process: startup errors, SIGTERM drain, and hand-off to a second process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from service_helpers import make_video, reference_outputs, run
from test_stream_service import assert_matches

from service.client import Client, FrameResult, Output, StreamClosed, StreamError, StreamOptions
from service.errors import ErrorCode
from service.types import CloseReason

REPO = Path(__file__).resolve().parents[2]


class ServerProcess:
    """``python -m service`` on an ephemeral port; the port is read from its structured ``listening`` log."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, stdin: Any = subprocess.DEVNULL) -> None:
        env = {**os.environ, "SLOTSTREAM_LOG_FORMAT": "json", "SLOTSTREAM_METRICS_LISTEN": "", **(env or {})}
        self.process = subprocess.Popen(  # stdin: no terminal (the server stops on SIGHUP when it has one)
            [sys.executable, "-m", "service", "--listen", "127.0.0.1:0", *args],
            cwd=REPO,
            env=env,
            stdin=stdin,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.logs: list[dict] = []
        self.raw_lines: list[str] = []  # stderr lines that are not JSON
        self.port: int | None = None
        self._serving = threading.Event()
        self._reader = threading.Thread(target=self._read_logs, daemon=True)
        self._reader.start()

    def _read_logs(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                entry = {"message": line.rstrip()}
                self.raw_lines.append(line.rstrip())
            self.logs.append(entry)
            if entry.get("message") == "listening":
                self.port = int(entry["port"])
            if entry.get("message") == "serving":
                self._serving.set()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_serving(self, timeout: float = 60.0) -> ServerProcess:
        if not self._serving.wait(timeout):
            self.stop()
            pytest.fail(f"server did not start: {self.logs[-5:]}")
        return self

    def stop(self) -> int:
        """SIGTERM (if still running), wait for the exit, release the pipe; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        self._reader.join(10)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return code


def test_missing_model_directory_is_explained():
    result = subprocess.run(
        [sys.executable, "-m", "service", "--model-dir", "/nonexistent/model"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "is not a model directory" in result.stderr and "--model-dir" in result.stderr


def test_invalid_environment_is_reported_with_the_variable():
    env = {**os.environ, "SLOTSTREAM_MAX_STREAMS": "lots"}
    result = subprocess.run(
        [sys.executable, "-m", "service"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "SLOTSTREAM_MAX_STREAMS='lots'" in result.stderr


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLOTSTREAM_METRICS_LISTEN": "", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "service", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_misspelt_variable_is_warned_about_in_the_configured_log_format(model_dir):
    """The warning used to be printed before logging was configured: a bare line among the JSON ones."""
    server = ServerProcess("--model-dir", str(model_dir), env={"SLOTSTREAM_MAX_STREAM": "3"}).wait_serving()
    try:
        warnings = [entry for entry in server.logs if "SLOTSTREAM_MAX_STREAM " in entry.get("message", "")]
    finally:
        server.stop()
    assert len(warnings) == 1, warnings
    assert warnings[0].get("level") == "WARNING" and warnings[0].get("logger") == "service.config", warnings
    assert "did you mean SLOTSTREAM_MAX_STREAMS?" in warnings[0]["message"]


def test_failed_tls_handshakes_leave_the_json_log_json(model_dir, certificates, monkeypatch):
    """gRPC's C core logs a line of its own for each failed handshake (a plaintext client, a port scan); the server
    keeps them off stderr unless GRPC_VERBOSITY is set, so its log stays one JSON object a line."""
    import socket

    monkeypatch.delenv("GRPC_VERBOSITY", raising=False)
    tls = ["--tls-cert", str(certificates / "server.pem"), "--tls-key", str(certificates / "server.key")]
    server = ServerProcess("--model-dir", str(model_dir), *tls)
    try:
        server.wait_serving()
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as junk:
                junk.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                junk.settimeout(5)
                with contextlib.suppress(OSError):
                    junk.recv(1024)
    finally:
        assert server.stop() == 0
    assert server.raw_lines == []
    assert any(entry.get("message") == "stopped" for entry in server.logs)


def test_a_misspelt_variable_is_still_named_when_the_configuration_is_refused():
    result = _serve("--model-dir", "/nonexistent/model", env={"SLOTSTREAM_MAX_STREAM": "3"})
    assert result.returncode == 2 and "is not a model directory" in result.stderr
    assert "slotstream: warning: ignoring unknown variable SLOTSTREAM_MAX_STREAM (did you mean" in result.stderr


def test_a_busy_port_is_refused_not_shared(model_dir):
    """gRPC enables SO_REUSEPORT by default on Linux, so a second server on the same port used to start and take a
    share of the clients; it must refuse to start instead."""
    first = ServerProcess("--model-dir", str(model_dir)).wait_serving()
    try:
        second = _serve("--model-dir", str(model_dir), "--listen", first.target)
        assert second.returncode == 2, second.stderr
        assert f"--listen {first.target}: the port is in use" in second.stderr
        assert "choose another port with --listen HOST:PORT" in second.stderr
        assert "model loaded" not in second.stderr and "add_port" not in second.stderr  # found before the model loads
    finally:
        assert first.stop() == 0


def test_a_busy_metrics_port_is_explained(model_dir):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        result = _serve("--model-dir", str(model_dir), "--listen", "127.0.0.1:0", "--metrics-listen", address)
    assert result.returncode == 2 and f"--metrics-listen {address}: the port is in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_model_that_needs_a_missing_plugin_is_explained(model_dir, tmp_path):
    import json
    import shutil

    shutil.copytree(model_dir, tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config["model"]["transition"] = {"name": "from_a_plugin", "kwargs": {}}
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    result = _serve("--model-dir", str(tmp_path / "model"), "--listen", "127.0.0.1:0")
    assert result.returncode == 2 and "unknown transition name 'from_a_plugin'" in result.stderr
    assert "plugin package" in result.stderr and "Traceback" not in result.stderr
    assert "stopped" not in result.stderr  # a server that never served ends with its error alone


def test_sigterm_drains_and_the_stream_continues_on_a_second_process(model_dir):
    """Process A gets SIGTERM mid-stream: it answers the frames it accepted, sends the hand-off state, ends the
    stream with UNAVAILABLE and exits 0; the client continues on process B with identical results."""
    first = ServerProcess("--model-dir", str(model_dir), "--grace-period-s", "10")
    second = ServerProcess("--model-dir", str(model_dir))
    first.wait_serving()
    second.wait_serving()
    clip = make_video(seed=41, frames=24)
    reference = reference_outputs(model_dir, clip)

    async def scenario():
        answers = []
        async with Client(first.target) as a, Client(second.target) as b:
            stream = await a.open(StreamOptions(outputs=frozenset({Output.SLOTS, Output.SEGMENTATION})))
            for frame in clip[:10]:
                answers.append(await stream.process(frame))
            for frame in clip[10:14]:  # in flight while the signal arrives
                await stream.send(frame)
            first.process.send_signal(signal.SIGTERM)
            while True:
                try:
                    answers.append(await stream.receive())
                except StreamError as ended:
                    error = ended
                    break
            opened = await stream.reconnect(b)
            assert opened.kind.name == "HANDED_OFF"
            while stream.unanswered:  # frames the old server never read were re-sent by reconnect()
                answers.append(await stream.receive())
            for frame in clip[14:]:
                answers.append(await stream.process(frame))
            await stream.close()
        return answers, error

    try:
        answers, error = run(scenario(), timeout=120)
        exit_code = first.process.wait(30)  # the SIGTERM above, not a second one, must end it
    finally:
        first.stop()
        second.stop()
    assert error.code == ErrorCode.SHUTTING_DOWN
    closed = [a for a in answers if isinstance(a, StreamClosed)]
    assert len(closed) == 1 and closed[0].reason == CloseReason.SERVER_DRAINING
    results = [a for a in answers if isinstance(a, FrameResult)]
    assert [r.frame_index for r in results] == list(range(len(clip)))
    assert_matches(results, reference)
    assert exit_code == 0
    messages = [entry.get("message") for entry in first.logs]
    assert "shutdown requested" in messages and "stopped" in messages
    assert any(e.get("message") == "stream released" and e.get("reason") == "drained" for e in first.logs)


def test_sigterm_exits_promptly_when_idle(model_dir):
    server = ServerProcess("--model-dir", str(model_dir)).wait_serving()
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 10


def test_sighup_is_ignored_and_a_second_sigterm_ends_the_drain_at_once(model_dir):
    """A client that keeps writing after the hand-off would hold the drain for the whole grace period (20 s here);
    an operator's second SIGTERM ends it at once. SIGHUP, which would otherwise end the process on the spot, is
    logged and ignored."""
    import grpc

    from service.generated import pb, pb_grpc

    server = ServerProcess("--model-dir", str(model_dir), "--grace-period-s", "20").wait_serving()
    frame = make_video(seed=7, frames=1)[0]
    height, width, _ = frame.shape
    image = pb.Image(encoding=pb.IMAGE_ENCODING_RAW_RGB8, data=frame.tobytes(), height=height, width=width)

    async def stubborn_client() -> tuple[float, float]:
        """Open a stream, signal the server, and write a frame every 0.2 s without ever ending the requests;
        returns the times (monotonic) of the first SIGTERM and of the call's end."""
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = pb_grpc.PerceptionStub(channel).Stream()
            await call.write(pb.StreamRequest(open=pb.OpenStream()))
            assert (await call.read()).WhichOneof("kind") == "opened"
            server.process.send_signal(signal.SIGHUP)
            await asyncio.sleep(0.5)
            assert server.process.poll() is None, "SIGHUP ended the server"
            server.process.send_signal(signal.SIGTERM)
            first = time.monotonic()
            reading = asyncio.ensure_future(call.code())
            index = 0
            while not reading.done():
                index += 1
                with contextlib.suppress(Exception):  # the call may end under a write
                    await call.write(pb.StreamRequest(frame=pb.Frame(frame_index=index, image=image)))
                await asyncio.sleep(0.2)
                if time.monotonic() - first > 1.5 and index < 1000:
                    server.process.send_signal(signal.SIGTERM)
                    index = 1000  # once
            return first, time.monotonic()

    first, ended = run(stubborn_client(), timeout=60)
    assert server.process.wait(10) == 0, "the process exits by itself once its drain ended"
    exited = time.monotonic()
    assert server.stop() == 0
    assert ended - first < 6, f"the call ended {ended - first:.1f} s after the first SIGTERM (grace period 20 s)"
    assert exited - first < 8
    messages = [entry.get("message", "") for entry in server.logs]
    assert any(message.startswith("SIGHUP ignored") for message in messages), messages
    assert any(message.startswith("asked again to stop: ending the drain now") for message in messages), messages


def test_sighup_stops_a_server_whose_terminal_closed(model_dir):
    """With a terminal on its standard input (``make serve``), SIGHUP means the terminal closed: the server drains
    and exits as on SIGTERM rather than serve on, detached, holding its ports."""
    controller, terminal = os.openpty()
    try:
        server = ServerProcess("--model-dir", str(model_dir), stdin=terminal).wait_serving()
        server.process.send_signal(signal.SIGHUP)
        assert server.process.wait(30) == 0
        server.stop()
    finally:
        os.close(controller)
        os.close(terminal)
    messages = [entry.get("message", "") for entry in server.logs]
    assert "shutdown requested" in messages and "stopped" in messages, messages
