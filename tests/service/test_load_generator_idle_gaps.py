"""The load generator's ``--idle-gap-s``: streams pause after every ``--gap-every`` frames, and the report gives the
latencies of the first frames after the pauses apart from the others (a server that is slow after an idle spell
shows there)."""

from __future__ import annotations

import time

import pytest
from service_helpers import make_video, run

from service.bench.load import main
from service.bench.remote import LoadSpec, run_load


def test_the_first_frames_after_idle_gaps_are_reported_apart(server):
    spec = LoadSpec(server.target, streams=2, frames=7, window=2, warmup_frames=0, idle_gap_s=0.3, gap_every=3)
    began = time.perf_counter()
    report = run(run_load(spec, make_video(seed=44, frames=3, size=(32, 32)))).report()
    took = time.perf_counter() - began
    assert took >= 0.6, "two gaps of 0.3 s per stream, the streams pausing side by side"
    assert report["results"] == report["sent"] == 14 and report["lost"] == 0
    assert report["after_gap_latency_ms"]["count"] == 4, "frames 3 and 6 of each stream"
    assert report["steady_latency_ms"]["count"] == 10
    expected = report["after_gap_latency_ms"]["p50"] / report["steady_latency_ms"]["p50"]
    assert report["after_gap_ratio_p50"] == pytest.approx(expected, abs=1e-3)


def test_without_gaps_the_report_has_no_gap_figures(server):
    report = run(run_load(LoadSpec(server.target, frames=3, warmup_frames=0), make_video(seed=45, frames=2))).report()
    assert "after_gap_latency_ms" not in report and "after_gap_ratio_p50" not in report


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--idle-gap-s", "-1"], "--idle-gap-s must be a number from 0 to 3600"),
        (["--idle-gap-s", "nan"], "--idle-gap-s must be a number from 0 to 3600"),
        (["--idle-gap-s", "1", "--gap-every", "0"], "--gap-every must be >= 1, got 0"),
        (["--idle-gap-s", "1", "--frames", "20", "--gap-every", "20"], "--gap-every 20 leaves no gap in --frames 20"),
    ],
)
def test_gap_settings_that_make_no_sense_are_usage_errors(flags, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--target", "127.0.0.1:1", *flags])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_the_suite_refuses_idle_gaps(capsys):
    with pytest.raises(SystemExit):
        main(["--suite", "--idle-gap-s", "1"])
    assert "--idle-gap-s is for --target" in capsys.readouterr().err
