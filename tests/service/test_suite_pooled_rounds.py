"""``python -m service.bench --suite`` pools its rounds from their unrounded times: with one round the pooled frames
per second and ``throughput_ratio`` are that round's own (they were computed from seconds rounded to the
millisecond, 0.3-0.6 % off for a round of a tenth of a second)."""

from __future__ import annotations

import json

from service.bench.__main__ import main as bench_main


def test_one_pooled_round_reports_that_rounds_own_throughput(model_dir, tmp_path):
    out = tmp_path / "suite.json"
    args = ["--suite", "--model", str(model_dir), "--streams", "2", "--frames", "6", "--rounds", "1", "--size", "32"]
    assert bench_main([*args, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    (only_round,) = report["rounds"]
    one, many = report["remote"]
    assert one["frames_per_second"] == only_round["one_stream_frames_per_second"], (one, only_round)
    assert many["frames_per_second"] == only_round["many_streams_frames_per_second"], (many, only_round)
    assert report["ratios"]["throughput_ratio"] == only_round["throughput_ratio"]
    for pooled in (one, many):
        (kept,) = pooled["rounds"]
        assert pooled["seconds"] == kept["seconds"] and kept["frames_per_second"] == pooled["frames_per_second"]
        assert "raw_seconds" not in kept and "raw_latencies_ms" not in kept  # the pooling figures stay out
