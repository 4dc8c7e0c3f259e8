"""The load generator against a server that goes away mid-run: the frames never answered are reported as ``lost``,
and the run exits with status 1 and a line saying why, so a script chaining runs tells it from a complete one."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from tcp_proxy import after_frame

from service.bench.load import main
from service.bench.remote import LoadRun, LoadSpec, StreamCounts
from service.bench.suite import _pool


def _load_flags(target: str, frames: int, out: Path) -> list[str]:
    return ["--target", target, "--streams", "1", "--frames", str(frames), "--size", "32",
            "--json", str(out)]  # fmt: skip


def test_frames_left_unanswered_by_a_server_that_shut_down_fail_the_run(start_server, tmp_path: Path, capsys):
    server = start_server()
    out = tmp_path / "report.json"
    status: list[int] = []
    run = threading.Thread(target=lambda: status.append(main([*_load_flags(server.target, 400, out), "--fps", "20"])))
    run.start()
    after_frame(server, 15, lambda: server.stop(0.5)).join(90)
    run.join(90)
    assert status == [1]
    report = json.loads(out.read_text())["remote"][0]
    assert 0 < report["lost"] < report["sent"] == 400 and report["ended_streams"] == 1
    assert "this server is shutting down" in report["first_end"]
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{report['lost']} of 400 frames got no answer: the server ended 1 stream(s) before answering" in last_line
    assert "this server is shutting down" in last_line


def test_a_run_with_every_frame_answered_exits_0(server, tmp_path: Path, capsys):
    out = tmp_path / "report.json"
    assert main(_load_flags(server.target, 6, out)) == 0
    report = json.loads(out.read_text())["remote"][0]
    assert report["lost"] == 0 and report["ended_streams"] == 0 and "first_end" not in report
    assert "got no answer" not in capsys.readouterr().err


def test_a_stream_that_expires_mid_run_is_reported_as_ended_with_the_servers_reason(start_server, tmp_path, capsys):
    """A call the server ends with an error (here its idle timeout, between frames sent 2 s apart) is counted as an
    ended stream like a drained one, where the run used to stop with no report."""
    server = start_server(idle_timeout_s=0.5)
    out = tmp_path / "report.json"
    assert main([*_load_flags(server.target, 3, out), "--fps", "0.5"]) == 1
    report = json.loads(out.read_text())["remote"][0]
    assert report["lost"] == report["sent"] == 3 and report["ended_streams"] == 1
    assert "STREAM_EXPIRED" in report["first_end"]
    assert "3 of 3 frames got no answer" in capsys.readouterr().err


def test_the_suites_pooled_rounds_keep_the_ended_streams_and_the_first_reason():
    spec = LoadSpec("127.0.0.1:1", frames=4)
    ended = LoadRun(spec, (8, 8, 3), 1.0, [StreamCounts(results=1, ended="closed by the server (SERVER_DRAINING)")])
    whole = LoadRun(spec, (8, 8, 3), 1.0, [StreamCounts(results=4)])
    pooled = _pool([whole, ended])
    assert pooled["lost"] == 3 and pooled["ended_streams"] == 1
    assert pooled["first_end"] == "closed by the server (SERVER_DRAINING)"
    assert "first_end" not in _pool([whole, whole]) and _pool([whole, whole])["ended_streams"] == 0
