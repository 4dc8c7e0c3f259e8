"""``python -m service.bench``: frame sides, batch sizes, thread counts and clips too large to build are refused up
front with a usage error naming the flags, before any frame is made, model loaded or server started (they used to
end in allocation tracebacks, ``ValueError`` tracebacks, or run on without bound)."""

from __future__ import annotations

from pathlib import Path

import pytest

import service.bench.agreement as agreement
import service.bench.load as load
import service.cli_limits
from service.bench.__main__ import main as bench_main

GIB = 1024**3


def _no_clip(*args, **kwargs):
    pytest.fail("frames were made for refused flags")


@pytest.fixture
def one_gib_of_memory(monkeypatch):
    """A machine or container that gives 1 GiB (a budget of 256 MiB), whatever this one gives."""
    monkeypatch.setattr(service.cli_limits, "memory_limit_bytes", lambda: GIB)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--size", "20000", "--jpeg-quality", "80"], "--size must be at most 16777216 pixels"),
        (["--size", "4097x4096", "--jpeg-quality", "80"], "got 4097x4096: 16781312 pixels"),
        (["--mask-size", "4096x5000"], "--mask-size must be at most 16777216 pixels"),
    ],
)
def test_the_load_refuses_a_frame_beyond_the_servers_default_pixel_limit(flags, message, capsys, monkeypatch):
    monkeypatch.setattr(load, "synthetic_clip", _no_clip)
    with pytest.raises(SystemExit) as exited:
        bench_main(["--target", "127.0.0.1:1", *flags])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and message in err, err


def test_the_load_refuses_a_clip_larger_than_the_memory_budget(capsys, monkeypatch, one_gib_of_memory):
    monkeypatch.setattr(load, "synthetic_clip", _no_clip)
    with pytest.raises(SystemExit) as exited:
        bench_main(["--target", "127.0.0.1:1", "--size", "1024", "--jpeg-quality", "80"])
    err = capsys.readouterr().err
    needed = load.clip_bytes((1024, 1024))
    assert exited.value.code == 2 and f"--size 1024x1024: the 64 frames of the clip sent need about {needed:,}" in err
    assert "more than the 268,435,456 bytes (0.2 GiB) allowed" in err


def test_a_panorama_within_the_pixel_limit_is_taken(one_gib_of_memory, capsys):
    """The server counts pixels, not sides: a 100 x 4500 strip has a side past 4096 and few pixels."""
    assert bench_main(["--target", "127.0.0.1:1", "--size", "100x4500", "--jpeg-quality", "80"]) == 1
    assert "python -m service.bench: 127.0.0.1:1:" in capsys.readouterr().err


def test_a_clip_within_the_budget_is_built(one_gib_of_memory, capsys):
    """The refusal is the budget's, not the size's: 32x32 frames cost little, and the run goes on to find no
    server there."""
    assert bench_main(["--target", "127.0.0.1:1", "--size", "32"]) == 1
    assert "python -m service.bench: 127.0.0.1:1:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--size", "20000"], "--size must be at most 4096 pixels a side"),
        (["--size", "4"], "--size must be at least 8 pixels (the synthetic clips' smallest frame), got 4"),
        (["--clips", "200", "--frames", "3000"], "--frames 3000 at --size 64 (every clip and its answers are held)"),
    ],
)
def test_agreement_refuses_sizes_and_clips_it_cannot_build(
    flags, message, model_dir, capsys, monkeypatch, one_gib_of_memory
):
    monkeypatch.setattr(agreement, "synthetic_clips", _no_clip)
    assert bench_main(["--agreement", "--model", str(model_dir), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m service.bench --agreement: ") and message in err, err


def test_agreement_counts_every_clip_as_the_generator_makes_it_and_both_backends_segmentations():
    from training.datasets.synthetic.generator import video_bytes

    segmentations = 2 * 3000 * 64 * 64
    assert agreement.clips_bytes(200, 3000, 64) == 200 * (video_bytes("medium", 3000, (64, 64)) + segmentations)
    assert agreement.clips_bytes(200, 3000, 64) > 9 * GIB


def test_agreement_counts_the_answers_it_holds_beside_the_clips(model_dir, capsys, monkeypatch, one_gib_of_memory):
    """Both backends' segmentations of every frame stay in memory until the comparison: 800 frames of 256 x 256
    fit the budget as a clip, not with the answers (each answer's [K, H, W] soft masks are dropped on arrival)."""
    from training.datasets.synthetic.generator import video_bytes

    assert video_bytes("medium", 800, (256, 256)) < GIB // 4 < agreement.clips_bytes(1, 800, 256)
    monkeypatch.setattr(agreement, "synthetic_clips", _no_clip)
    flags = ["--clips", "1", "--frames", "800", "--size", "256"]
    assert bench_main(["--agreement", "--model", str(model_dir), *flags]) == 2
    assert "--clips 1 x --frames 800 at --size 256 (every clip and its answers are held)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-sizes", "1,100000"], "--batch-sizes must be at most 1024 frames a call"),
        (["--threads", "100000"], "--threads must be at most 1024"),
    ],
)
def test_local_refuses_batches_and_threads_beyond_their_bounds_before_loading(flags, message, model_dir, capsys):
    assert bench_main(["--local", "--model", str(model_dir), "--no-floor", "--iterations", "1", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m service.bench --local: ") and message in err and "cannot load" not in err


@pytest.mark.parametrize("mode", [["--local", "--no-floor", "--iterations", "1"], ["--agreement"]])
def test_a_report_that_would_replace_a_file_of_the_model_measured_is_refused(mode, model_dir, capsys):
    """``--json MODEL/config.json`` (or an export's manifest.json) wrote the report over the model's own file, and
    neither the server nor the tools could load the model afterwards."""
    before = (model_dir / "config.json").read_bytes()
    assert bench_main([*mode, "--model", str(model_dir), "--json", str(model_dir / "config.json")]) == 2
    err = capsys.readouterr().err
    assert f"--json {model_dir / 'config.json'} is a file of the model in {model_dir}: it would be replaced" in err
    assert (model_dir / "config.json").read_bytes() == before


@pytest.mark.parametrize(
    ("flag", "message"), [("--tls-ca", "(--tls-ca) {path}: cannot read it"), ("--tls-cert", "needs its key too")]
)
def test_tls_files_that_cannot_be_used_are_usage_errors_before_the_run(flag, message, tmp_path, capsys, monkeypatch):
    """They were read when the first stream connected: a missing file ended the run in a traceback."""
    monkeypatch.setattr(load, "synthetic_clip", _no_clip)
    path = tmp_path / "missing ca.pem"
    with pytest.raises(SystemExit) as exited:
        bench_main(["--target", "127.0.0.1:1", "--frames", "2", flag, str(path)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and message.format(path=path) in err, err


def test_a_suite_report_that_would_replace_a_file_of_the_model_measured_is_refused(model_dir, capsys):
    before = (model_dir / "config.json").read_bytes()
    with pytest.raises(SystemExit) as exited:
        bench_main(["--suite", "--streams", "2", "--model", str(model_dir), "--json", str(model_dir / "config.json")])
    assert exited.value.code == 2 and "is a file of the model in" in capsys.readouterr().err
    assert (model_dir / "config.json").read_bytes() == before


def test_a_report_sent_to_a_device_is_left_to_the_write():
    """``--json /dev/stdout`` prints the report: no file can be made next to a device, which is no reason to refuse
    it (the check for a writable folder refused it, as root too)."""
    from service.bench.cli import json_output_problems

    assert json_output_problems(Path("/dev/null")) == json_output_problems(Path("/dev/stdout")) == []
