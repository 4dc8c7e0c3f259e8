"""The demo and the benchmarks run end to end (tiny sizes: these check that they work, not how fast)."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from service_helpers import make_video, run

from service.bench.__main__ import main as bench_main
from service.bench.remote import LoadSpec, run_load
from service.demo import main as demo_main


def test_demo_serves_streams_and_writes_an_overlay(model_dir, tmp_path):
    assert demo_main(["--model-dir", str(model_dir), "--out-dir", str(tmp_path), "--frames", "4"]) == 0
    with Image.open(tmp_path / "overlay.gif") as overlay:
        assert overlay.n_frames == 4
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 4
    assert (tmp_path / "clip.mp4").stat().st_size > 0


def test_demo_server_ignores_server_settings_of_the_environment(model_dir, tmp_path, capsys, monkeypatch):
    """An auth token set for another server made the demo's server refuse the demo's client, and the demo then
    named output files it had not written."""
    monkeypatch.setenv("SLOTSTREAM_AUTH_TOKEN", "meant-for-another-server")
    assert demo_main(["--model-dir", str(model_dir), "--out-dir", str(tmp_path), "--frames", "2"]) == 0
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2
    assert "Overlay:" in capsys.readouterr().err


def test_demo_names_an_out_dir_it_cannot_make(model_dir, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    assert demo_main(["--model-dir", str(model_dir), "--out-dir", str(tmp_path / "a-file"), "--frames", "2"]) == 2
    assert f"demo: --out-dir {tmp_path / 'a-file'}: cannot make the folder" in capsys.readouterr().err


def test_demo_explains_a_missing_model(tmp_path, capsys):
    assert demo_main(["--model-dir", str(tmp_path / "absent"), "--out-dir", str(tmp_path)]) == 2
    assert "not a model directory" in capsys.readouterr().err


def test_demo_serves_the_model_the_server_variable_names(tmp_path, capsys, monkeypatch):
    """The missing-model message points at SLOTSTREAM_MODEL_DIR, so the demo reads it as the server does."""
    monkeypatch.setenv("SLOTSTREAM_MODEL_DIR", str(tmp_path / "from-env"))
    assert demo_main(["--out-dir", str(tmp_path / "out")]) == 2
    assert f"{tmp_path / 'from-env'} is not a model directory" in capsys.readouterr().err


def test_load_generator_reports_latency_throughput_and_losses(server, tmp_path):
    out = tmp_path / "load.json"
    code = bench_main(
        ["--target", server.target, "--streams", "3", "--frames", "8", "--size", "32", "--json", str(out)]
    )
    assert code == 0
    (run,) = json.loads(out.read_text())["remote"]
    assert run["results"] == 24 and run["lost"] == 0 and run["errors"] == 0
    assert set(run["latency_ms"]) >= {"p50", "p95", "p99"} and len(run["per_stream"]) == 3
    assert run["frames_per_second"] > 0


def test_load_generator_raises_a_failing_send_at_once(start_server):
    """A frame that cannot be sent ends the run with its own error, not with STREAM_EXPIRED after the server's
    idle timeout (kept short here so that the old behaviour fails quickly)."""
    server = start_server(idle_timeout_s=2.0)
    clip = [make_video(56, 1)[0], np.zeros((30, 40, 3), np.float32)]  # the second frame is not uint8
    with pytest.raises(ValueError, match="uint8"):
        run(run_load(LoadSpec(server.target, frames=3, window=2, warmup_frames=0), clip))


def test_suite_reports_the_readme_ratios(model_dir, tmp_path):
    out = tmp_path / "suite.json"
    args = ["--suite", "--model", str(model_dir), "--streams", "2", "--frames", "4", "--rounds", "1", "--size", "32"]
    assert bench_main([*args, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {"overhead_ms_median_of_pairs", "throughput_ratio", "frames_lost"} <= set(report["ratios"])
    assert report["ratios"]["frames_lost"] == 0
    assert [run["spec"]["streams"] for run in report["remote"]] == [1, 2]
    transport = report["transport"]
    assert transport["request_bytes"] > 32 * 32 * 3, "a raw 32x32 frame and its header"
    assert transport["response_bytes"] > 0 and transport["bare_grpc_echo_ms"]["p50"] > 0
    assert {"outside_server_p50_ms", "server_beyond_pipeline_p50_ms", "bare_grpc_echo_p50_ms"} <= set(report["ratios"])


def test_bench_help_lists_the_three_benchmarks(capsys):
    assert bench_main(["--help"]) == 0
    usage = capsys.readouterr().out
    assert all(flag in usage for flag in ("--target", "--suite", "--local"))
    assert bench_main([]) == 2


def test_bench_against_no_server_says_so_without_a_traceback(capsys):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert bench_main(["--target", f"127.0.0.1:{port}", "--streams", "1", "--frames", "2"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "127.0.0.1:1", "--window", "0"], "--window must be >= 1, got 0"),
        (["--target", "127.0.0.1:1", "--streams", "-1"], "--streams must be >= 1, got -1"),
        (["--suite", "--streams", "1"], "give --streams 2 or more"),
    ],
)
def test_bench_load_flags_are_checked_before_any_connection(args, message, capsys):
    with pytest.raises(SystemExit) as exited:
        bench_main(args)
    assert exited.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-sizes", "a"], "--batch-sizes must be comma-separated integers >= 1"),
        (["--backends", ","], "--backends names no backend"),
        (["--iterations", "0"], "need --iterations >= 1"),
        (["--backends", "nonsense"], "--backends names unknown backends 'nonsense'"),
        (["--device", "gpu"], "cannot load the model"),
    ],
)
def test_bench_local_refuses_bad_flags_without_a_traceback(model_dir, args, message, capsys):
    assert bench_main(["--local", "--model", str(model_dir), "--no-floor", "--iterations", "1", *args]) == 2
    assert message in capsys.readouterr().err


def test_bench_local_names_a_missing_model_directory(tmp_path, capsys):
    assert bench_main(["--local", "--model", str(tmp_path / "none")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_bench_local_names_a_damaged_manifest_and_reads_the_servers_onnx_variables(
    model_dir, tmp_path, monkeypatch, capsys
):
    pytest.importorskip("onnxruntime", reason="the onnx backend needs ONNX Runtime: pip install -e '.[onnx]'")
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(model_dir, damaged)
    (damaged / "manifest.json").write_text("{")
    argv = ["--local", "--backends", "onnx", "--no-floor", "--iterations", "1"]
    assert bench_main([*argv, "--model", str(damaged)]) == 2
    assert "manifest.json: not valid JSON" in capsys.readouterr().err
    monkeypatch.setenv("SLOTSTREAM_ONNX_GRAPH_OPTIMIZATION", "nonsense")
    assert bench_main([*argv, "--model", str(model_dir)]) == 2
    assert "graph_optimization must be one of disable, basic, extended, all, got 'nonsense'" in capsys.readouterr().err


def test_suite_refuses_server_args_the_server_would_refuse(model_dir, capsys):
    args = ["--suite", "--model", str(model_dir), "--streams", "2", "--server-args", "--max-streams 0"]
    assert bench_main(args) == 2
    assert "--max-streams" in capsys.readouterr().err


def test_the_spawner_names_the_plugin_block_list_as_the_registry_does():
    """``service.bench.spawn`` spells the variable out to stay free of torch; the two must not drift apart."""
    from plugins.registry import BLOCK_ENV_VAR
    from service.bench.spawn import PLUGIN_BLOCK_LIST

    assert PLUGIN_BLOCK_LIST == BLOCK_ENV_VAR


def _servers_of(model_dir: Path) -> list[int]:
    """Pids of ``python -m service`` processes serving ``model_dir`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # ended meanwhile
            continue
        if b"service" in words and str(model_dir).encode() in words:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the server's process in /proc (Linux)")
def test_a_demo_stopped_while_its_server_starts_leaves_no_server_behind(model_dir, tmp_path):
    """SIGTERM (a supervisor, an IDE's stop button) in the seconds the demo's server starts: the demo stops it."""
    own_model = tmp_path / "model for this test"
    shutil.copytree(model_dir, own_model)
    demo = subprocess.Popen(
        [sys.executable, "-m", "service.demo", "--model-dir", str(own_model), "--out-dir", str(tmp_path / "out")],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert demo.stderr is not None
    for line in demo.stderr:
        if line.startswith("starting a server"):
            break
    deadline = time.monotonic() + 30
    while not _servers_of(own_model):  # its server process exists
        assert time.monotonic() < deadline and demo.poll() is None, "the demo's server never started"
        time.sleep(0.02)
    demo.send_signal(signal.SIGTERM)
    assert demo.wait(60) == 143
    demo.stderr.close()
    deadline = time.monotonic() + 10
    while _servers_of(own_model):
        assert time.monotonic() < deadline, "the demo's server outlived the demo"
        time.sleep(0.1)


@pytest.mark.parametrize(
    "mode", [["--local"], ["--target", "127.0.0.1:1"], ["--agreement", "--backends", "torch,onnx"]]
)
def test_a_json_report_that_cannot_be_written_is_refused_before_the_benchmark_runs(model_dir, tmp_path, capsys, mode):
    started = time.monotonic()
    with contextlib.suppress(SystemExit):  # --target's parser exits with status 2
        assert bench_main([*mode, "--model", str(model_dir), "--json", str(tmp_path)]) == 2
    assert f"--json {tmp_path} is a folder; give a file name" in capsys.readouterr().err
    assert time.monotonic() - started < 5, "refused before benchmarking"


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ("127.0.0.1:112636", "the port must be 1-65535, got 112636"),
        ("127.0.0.1:-5", "the port must be 1-65535, got -5"),
        ("", "--target is empty"),
        (":50051", "give the server's host too"),
    ],
)
def test_a_target_gRPC_would_take_for_another_port_is_refused(target, said, capsys):
    from service.client.__main__ import main as client_main

    assert client_main(["describe", "--target", target]) == 2
    assert said in capsys.readouterr().err
