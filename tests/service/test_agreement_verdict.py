"""``--agreement`` prints shares with enough decimals that one below the mark never reads as reaching it (it
printed ``100.00%-100.00%`` over a clip at 99.9968 %, and with ``--min-agreement 1.0`` "less than 100.00%"), and
ends with an explicit PASSED or FAILED line."""

from __future__ import annotations

from service.bench import agreement
from service.bench.agreement import ClipAgreement, format_share, format_table, verdict

BACKENDS = ["torch", "onnx"]


def clips(*shares: float) -> list[ClipAgreement]:
    return [ClipAgreement(230 + i, 100, share, 0.02, 1e-5) for i, share in enumerate(shares)]


def test_a_share_below_one_never_reads_as_one_hundred_percent():
    assert format_share(1.0) == "100%"
    assert format_share(0.999968) == "99.9968%"
    assert format_share(0.999) == "99.9000%"
    assert format_share(0.99999999) == "99.999999%"  # 4 decimals would round it up to 100.0000%
    assert not format_share(1 - 1e-12).startswith("100")


def test_the_summary_shows_the_lowest_clip_as_the_table_does():
    table = format_table(clips(1.0, 0.999968, 1.0), BACKENDS)
    assert "| 231 | 100 | 99.9968% |" in table
    assert "segmentations agree on 99.9968% to 100% of the pixels" in table


def test_the_verdict_line_says_passed_or_failed_with_the_mark_and_the_lowest_clip():
    assert verdict(clips(1.0, 0.999968), 0.999) == (
        "PASSED: segmentations agree on at least 99.9000% of the pixels on all 2 clips (lowest 99.9968%, clip 231)"
    )
    failed = verdict(clips(1.0, 0.999968), 1.0)
    assert failed.startswith("FAILED: clips [231]: segmentations agree on less than 100% of the pixels")
    assert "(lowest 99.9968%, clip 231); 1 of 2 clips pass" in failed


def test_the_command_prints_the_verdict(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(agreement, "synthetic_clips", lambda seeds, frames, size: {seed: [] for seed in seeds})
    monkeypatch.setattr(agreement, "serve_clips", lambda model_dir, backend, clips, server_args=(): clips)
    monkeypatch.setattr(agreement, "compare", lambda reference, other, seed: clips(0.999968)[0])
    argv = ["--agreement", "--model", str(tmp_path), "--clips", "1"]
    assert agreement.main([*argv, "--min-agreement", "1.0"]) == 1
    out, err = capsys.readouterr()
    assert "99.9968% to 99.9968%" in out and "100.00%" not in out + err
    assert "FAILED: clips [230]: segmentations agree on less than 100% of the pixels (lowest 99.9968%" in err
    assert agreement.main(argv) == 0
    assert "PASSED: segmentations agree on at least 99.9000% of the pixels on the 1 clip" in capsys.readouterr().out
