"""``python -m service.bench``: ``--suite`` failures reported in one line, its two halves sending the same frames,
one event loop, self-describing reports and the flag checks (tiny sizes: these check behaviour, not speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.bench.__main__ import main as bench_main

REPO = Path(__file__).resolve().parents[2]
#: The smallest suite: 2 streams, 2 frames per stream and round, 1 round, 32x32 frames.
TINY_SUITE = ["--suite", "--streams", "2", "--frames", "2", "--rounds", "1", "--size", "32"]


def test_suite_reports_null_ratios_when_the_server_refuses_every_frame(model_dir, tmp_path, capsys):
    """32x32 frames are 1,024 pixels; the tiny model's masks (24x24) fit under the limit, the frames do not."""
    out = tmp_path / "suite.json"
    args = [*TINY_SUITE, "--model", str(model_dir), "--server-args", "--max-image-pixels 600", "--json", str(out)]
    assert bench_main(args) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "not measured (no frame answered)" in err
    report = json.loads(out.read_text())  # strict JSON: no NaN
    ratios = report["ratios"]
    assert ratios["throughput_ratio"] is None and ratios["overhead_ms_median_of_pairs"] is None
    assert ratios["throughput_ratio_median_of_rounds"] is None and ratios["bare_grpc_echo_p50_ms"] is None
    assert [(run["results"], run["errors"]) for run in report["remote"]] == [(0, 2), (0, 4)]
    assert report["remote"][0]["frame_weighted_mean_batch_size"] is None
    (local,) = report["local"]
    assert local["grpc_one_stream_errors"] == 2 and "IMAGE_TOO_LARGE" in local["grpc_first_error"]
    assert report["transport"]["response_bytes"] is None


def test_suite_paired_latency_sends_the_loads_encoding_and_token(model_dir, tmp_path):
    out = tmp_path / "suite.json"
    secret = ["--server-args", "--auth-token s3cret", "--token", "s3cret"]
    args = [*TINY_SUITE, "--model", str(model_dir), *secret, "--jpeg-quality", "60", "--json", str(out)]
    assert bench_main(args) == 0
    text = out.read_text()
    report = json.loads(text)
    (local,) = report["local"]
    assert local["jpeg_quality"] == 60 and local["grpc_one_stream_ms"]["count"] == 2
    assert report["transport"]["request_bytes"] < 32 * 32 * 3, "JPEG, not a raw 32x32 frame"
    assert all(run["spec"]["jpeg_quality"] == 60 for run in report["remote"])
    assert "s3cret" not in text, "tokens are never written to the report"
    settings = report["settings"]
    assert settings["server_args"] == ["--auth-token", "***"] and settings["token"] is True
    assert settings["jpeg_quality"] == 60 and settings["size"] == "32x32" and settings["rounds"] == 1
    argv = report["provenance"]["argv"]
    assert argv[argv.index("--token") + 1] == "***" and "--token '***'" in report["provenance"]["command"]
    assert report["provenance"]["machine"]["cpu"] and local["device"] == "cpu" and local["torch_threads"] >= 0


def test_suite_runs_on_one_event_loop_without_loop_closed_tracebacks(model_dir):
    """A second ``asyncio.run`` after ``grpc.aio`` used the first loop makes gRPC's poller print "Event loop is
    closed" tracebacks; the suite must run on one loop (a child process: the noise comes at loop shutdown)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "service.bench", *TINY_SUITE, "--model", str(model_dir)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Event loop is closed" not in done.stderr and "Traceback" not in done.stderr
    assert json.loads(done.stdout)["ratios"]["throughput_ratio"] > 0


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--model", "{tmp}/none"], 2, "--model {tmp}/none is not a directory"),
        (["--backend", "onnx"], 2, "cannot load the model: "),  # a model directory is not an export
        (["--server-args", "--auth-token s3cret"], 1, "a stream to the server failed: UNAUTHENTICATED"),
        (["--server-args", "--auth-token-file {tmp}/none"], 2, "the server did not start (exited with status"),
        (["--server-args", "--bogus 1"], 2, "--server-args: python -m service: error: unrecognized arguments"),
    ],
    ids=["missing-model", "not-an-export", "no-token", "server-exits", "unknown-server-flag"],
)
def test_suite_failures_are_one_line_errors(model_dir, tmp_path, capsys, args, status, message):
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    assert bench_main([*TINY_SUITE, "--model", str(model_dir), *args]) == status
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("python -m service.bench --suite: ") and message.replace("{tmp}", str(tmp_path)) in err


def test_target_report_records_command_machine_versions_and_settings(server, tmp_path):
    out = tmp_path / "load.json"
    args = ["--target", server.target, "--frames", "2", "--size", "32", "--fps", "500", "--json", str(out)]
    assert bench_main(args) == 0
    report = json.loads(out.read_text())
    record = report["provenance"]
    assert record["argv"] == args and record["command"].startswith("python -m service.bench --target ")
    assert set(record["versions"]) == {"python", "torch", "onnxruntime", "grpcio", "numpy"}
    assert record["machine"]["cpus_usable"] >= 1 and record["machine"]["cpu"] and record["machine"]["gpu"] is None
    assert len(record["machine"]["load_average"]) == 3 and min(record["machine"]["load_average"]) >= 0
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    if head.returncode == 0:  # the tests run from a git checkout: the report names its commit
        assert record["source"]["commit"] == head.stdout.strip() and isinstance(record["source"]["modified"], bool)
    assert "torch_threads" not in json.dumps(record), "the generator's torch threads say nothing about the server"
    settings = report["settings"]
    assert settings["target"] == server.target and settings["size"] == "32x32" and settings["fps"] == 500
    (run,) = report["remote"]
    assert run["frame_weighted_mean_batch_size"] == 1.0 and "mean_batch_size" not in run


@pytest.mark.parametrize("fps", ["0", "-5", "nan"])
def test_load_refuses_an_fps_that_is_not_positive(fps, capsys):
    with pytest.raises(SystemExit) as exited:
        bench_main(["--target", "127.0.0.1:1", "--fps", fps])
    assert exited.value.code == 2 and "--fps must be a number of frames per second from" in capsys.readouterr().err


def test_load_refuses_a_raw_frame_size_no_message_carries_before_making_frames(capsys, monkeypatch):
    import service.bench.load as load

    monkeypatch.setattr(load, "synthetic_clip", lambda *args: pytest.fail("frames were made for a refused size"))
    with pytest.raises(SystemExit) as exited:
        bench_main(["--target", "127.0.0.1:1", "--size", "2400"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "--size 2400x2400: a raw frame is 17,280,000 bytes" in err, err


def test_local_refuses_an_unknown_backend_before_exporting(model_dir, capsys):
    """A plain model directory would be exported for ``onnx`` first; an unknown name is refused before that."""
    args = ["--local", "--model", str(model_dir), "--backends", "onnx,foo", "--no-floor", "--iterations", "1"]
    assert bench_main(args) == 2
    err = capsys.readouterr().err
    assert "--backends names unknown backends 'foo': choose from torch, onnx, tensorrt" in err
    assert "exporting" not in err


@pytest.mark.parametrize("mark", ["0", "1.5", "nan"])
def test_agreement_refuses_a_min_agreement_outside_0_1(tmp_path, capsys, mark):
    args = ["--agreement", "--model", str(tmp_path), "--clips", "0", "--min-agreement", mark]
    assert bench_main(args) == 2
    assert f"--min-agreement is a share of the pixels in (0, 1], got {float(mark)}" in capsys.readouterr().err


def test_provenance_hides_tokens_and_names_no_gpu_for_the_cpu():
    from service.bench.provenance import gpu_name, provenance, redact

    argv = ["--target", "h:1", "--token", "a", "--server-args", "--auth-token b --x 1", "--token=c"]
    assert redact(argv) == [
        "--target",
        "h:1",
        "--token",
        "***",
        "--server-args",
        "--auth-token *** --x 1",
        "--token=***",
    ]
    assert redact(["--server-args=--auth-token=d", "--auth-token-file", "f"])[0] == "--server-args=--auth-token=***"
    assert redact(["--auth-token-file", "f"]) == ["--auth-token-file", "f"], "a file name is no secret"
    # The server's parser takes abbreviations inside --server-args; the benchmark's own parsers take none, so a
    # token can never reach the report under a shortened flag.
    assert redact(["--server-args", "--auth-tok e"]) == ["--server-args", "--auth-tok ***"]
    assert gpu_name(None) is None and gpu_name("cpu") is None
    assert provenance([], device="cpu")["machine"]["gpu"] is None


@pytest.mark.parametrize("abbreviated", ["--tok", "--toke"])
def test_the_benchmarks_take_no_abbreviated_flags(abbreviated, capsys):
    from service.bench.load import main as load_main

    with pytest.raises(SystemExit) as exited:
        load_main(["--target", "127.0.0.1:1", abbreviated, "s3cret", "--frames", "1"])
    assert exited.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_load_sends_frames_of_the_size_and_asks_for_masks_of_the_size_given(server, monkeypatch, tmp_path):
    """A robot's case: 480x640-like frames with masks at the frame's size (the model's 64x64 hides their cost)."""
    import service.runner as runner

    asked: list[tuple[int, int]] = []
    made = runner.mask_outputs

    def spy(masks, requests):
        asked.extend(request.size for request in requests)
        return made(masks, requests)

    monkeypatch.setattr(runner, "mask_outputs", spy)
    out = tmp_path / "load.json"
    args = ["--target", server.target, "--frames", "2", "--size", "24x40", "--mask-size", "48x80", "--json", str(out)]
    assert bench_main(args) == 0
    settings = json.loads(out.read_text())["settings"]
    assert settings["size"] == "24x40" and settings["mask_size"] == "48x80"
    assert asked and set(asked) == {(48, 80)}


@pytest.mark.parametrize("size", ["0", "4x", "x5", "3x0", "ten"])
def test_load_refuses_a_size_that_is_no_pixel_size(size, capsys):
    with pytest.raises(SystemExit) as exited:
        bench_main(["--target", "127.0.0.1:1", "--size", size])
    assert exited.value.code == 2 and "expected N or HxW" in capsys.readouterr().err
