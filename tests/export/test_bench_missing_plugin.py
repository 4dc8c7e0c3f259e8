"""``python -m service.bench --local`` on an export whose component comes from a plugin that is not installed: the
``onnx`` backend needs no plugin, so the timings are measured, printed and written, and only the FLOP floor (which
rebuilds the PyTorch model) is skipped with a note saying why; the ``torch`` backend ends with one error line. Both
used to end in a ``RegistryError`` traceback, the timings of the onnx run lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import plugins.manager
from plugins import ComponentRegistry, build_plugin_manager
from plugins.builtin.transitions.identity import IdentityTransition
from plugins.testing import build_tiny, tiny_model_config
from service.bench.__main__ import main as bench_main

pytest.importorskip("onnxruntime", reason="exports are checked in ONNX Runtime: pip install -e '.[onnx]'")

MISSING = "unknown transition name 'bench_damped'"


class BenchDamped(IdentityTransition):
    """The README's ``Damped``: registered only while the export is written, then gone like an uninstalled plugin."""

    name = "bench_damped"

    def forward(self, past_slots: list[torch.Tensor], past_features: list[torch.Tensor]) -> torch.Tensor:
        return 0.9 * past_slots[-1]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.export import ExportOptions, export_model

    own: ComponentRegistry = build_plugin_manager(load_entry_points=False).registry
    own.add_transition(BenchDamped)
    folder = tmp_path_factory.mktemp("missing-plugin")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plugins.manager, "_default_registry", own)  # the export's from_pretrained finds the component
        build_tiny(tiny_model_config(transition={"name": "bench_damped"}), own).save_pretrained(folder / "model")
        export_model(folder / "model", folder / "export", ExportOptions(parity_frames=2, batch_sizes=(1,)))
    return folder / "export"


def _bench(export: Path, backend: str, *extra: str) -> int:
    argv = ["--local", "--model", str(export), "--backends", backend, "--batch-sizes", "1"]
    return bench_main([*argv, "--iterations", "2", "--warmup", "0", *extra])


def test_onnx_timings_stand_and_the_floor_is_skipped_with_the_reason(
    export_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    assert _bench(export_dir, "onnx", "--json", str(out)) == 0
    printed = capsys.readouterr()
    assert "| onnx | 1 |" in printed.out and "Traceback" not in printed.err
    assert "no floor: cannot rebuild the PyTorch model to count its FLOPs: " in printed.out
    assert MISSING in printed.out
    report = json.loads(out.read_text())
    assert [(r["backend"], r["batch"]) for r in report["results"]] == [("onnx", 1)]
    assert "floor" not in report and MISSING in report["floor_skipped"]
    assert f"{export_dir / 'config.json'}: " in report["floor_skipped"]  # the file that names the component


def test_the_torch_backend_ends_with_one_error_line(export_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _bench(export_dir, "torch") == 2
    printed = capsys.readouterr()
    assert printed.err.startswith("python -m service.bench --local: cannot load the model: ")
    assert MISSING in printed.err and len(printed.err.strip().splitlines()) == 1
    assert "| torch |" not in printed.out
