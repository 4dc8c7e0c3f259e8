"""The usage example in ``training.metrics``'s docstring runs as written (from the repository root) and scores the
shipped model."""

from __future__ import annotations

import textwrap
from pathlib import Path

import training.metrics

ROOT = Path(__file__).resolve().parents[2]


def _example() -> str:
    """The literal block after the docstring's ``::``: its indented lines."""
    block = (training.metrics.__doc__ or "").split("::\n\n", 1)[1]
    lines: list[str] = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


def test_the_docstring_example_runs_as_written(monkeypatch) -> None:
    code = _example()
    assert "ObjectDiscoveryMetrics(" in code and "metrics.update(" in code
    monkeypatch.chdir(ROOT)
    namespace: dict[str, object] = {}
    exec(compile(code, "training.metrics example", "exec"), namespace)
    report = namespace["report"]
    assert isinstance(report, dict)
    assert report["num_videos"] == 64 and report["num_frames"] == 64 * 8
    assert report["mask_source"] == "decoder"
    assert isinstance(report["video_fg_ari"], float) and 0 <= report["video_fg_ari"] <= 1
