"""``python -m training.benchmarks.bench_synthetic`` runs (tiny sizes: it works, not how fast), and refuses sizes
that would print nonsense (a negative frame rate) or fail inside the generator."""

from __future__ import annotations

import pytest

from training.benchmarks.bench_synthetic import main
from training.datasets.synthetic import LEVELS


def test_it_prints_a_rate_per_level(capsys) -> None:
    assert main(["--videos", "1", "--frames", "2", "--size", "16"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[0] for line in lines] == list(LEVELS)
    assert all(float(line.split()[1]) > 0 for line in lines)


@pytest.mark.parametrize("flags", [["--videos", "-1"], ["--frames", "0"], ["--size", "0"]])
def test_sizes_below_one_video_frame_or_pixel_are_refused(flags, capsys) -> None:
    with pytest.raises(SystemExit) as refused:
        main(flags)
    assert refused.value.code == 2 and "need --videos >= 1, --frames >= 1 and --size >= 8" in capsys.readouterr().err
