"""``python -m service.bench --soak`` against a server it starts: streams opened and closed over several client
connections, the server's memory sampled from ``/proc``, and the streams it still holds read through its Admin
service."""

from __future__ import annotations

import json
import sys

import pytest

from service.bench.__main__ import main

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="--soak reads /proc (Linux only)")


def test_a_soak_reports_its_cycles_memory_samples_and_no_streams_left(model_dir, tmp_path, capsys):
    report_path = tmp_path / "soak.json"
    argv = ["--soak", "--model", str(model_dir), "--cycles", "20", "--frames", "1", "--new-client-every", "6"]
    assert main([*argv, "--size", "24", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["cycles"] == 20 and report["clients"] == 4 and report["cycle_ms"]["count"] == 20
    assert report["streams_left"] == 0
    samples = report["server_rss_mb"]
    assert samples[0]["cycle"] == 2 and samples[-1]["cycle"] == 20, "after the warm-up tenth, then each tenth"
    assert all(sample["server_rss_mb"] > 10 for sample in samples), "a Python server takes more than 10 MB"
    growth = samples[-1]["server_rss_mb"] - samples[0]["server_rss_mb"]
    assert report["server_rss_growth_mb"] == pytest.approx(growth, abs=0.11)
    assert report["provenance"]["command"].startswith("python -m service.bench --soak")
    printed = capsys.readouterr().out
    assert "20 streams opened and closed over 4 client connections" in printed
    assert "streams left on the server: 0" in printed


def test_bad_soak_settings_are_refused_before_a_server_starts(tmp_path, capsys):
    assert main(["--soak", "--cycles", "5", "--new-client-every", "0", "--model", str(tmp_path / "none")]) == 2
    error = capsys.readouterr().err
    assert "--cycles must be >= 10, got 5" in error and "--new-client-every must be >= 1, got 0" in error
    assert f"--model {tmp_path / 'none'} is not a directory" in error
