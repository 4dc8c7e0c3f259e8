"""What tracing cannot carry into a graph fails the export, naming the component, its plugin and the line.

Test-only components in a registry of their own: a transition that branches on a tensor value (the graph would
freeze the branch), one whose loop count comes from ``.item()``, and one calling an operator the ONNX exporter
cannot convert. Also the opt-in ``plugins.testing.check_exportable`` that runs the same checks for plugin
authors, and the allow-list of harmless conversions.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import SERVICE_TINY_MODEL

import plugins.manager
from plugins import ComponentRegistry, Transition, VideoSlotModel, build_plugin_manager
from plugins.interfaces import ContractViolation
from plugins.testing import build_tiny, check_exportable, tiny_model_config
from training.export import (
    ALLOWED_CONVERSIONS,
    ExportError,
    FrozenValueError,
    UnsupportedOperatorError,
    export_graph,
    export_model,
)
from training.export.__main__ import main as export_main

PLUGIN = "export_test_plugin"


class BranchingTransition(Transition):
    """Doubles the slots on busy frames: a Python branch on a tensor value."""

    name = "branching"

    def forward(self, past_slots, past_features):  # type: ignore[no-untyped-def]
        if past_features[-1].std() > 0.3:  # BRANCH
            return past_slots[-1] * 2
        return past_slots[-1]


class ItemLoopTransition(Transition):
    """Adds 1 as many times as a tensor says: a loop count from ``.item()``."""

    name = "item_loop"

    def forward(self, past_slots, past_features):  # type: ignore[no-untyped-def]
        slots = past_slots[-1]
        for _ in range(int(past_features[-1].mean().item() * 4)):  # ITEM
            slots = slots + 1
        return slots


class SpectralTransition(Transition):
    """Uses an FFT, which the ONNX exporter cannot convert."""

    name = "spectral"

    def forward(self, past_slots, past_features):  # type: ignore[no-untyped-def]
        slots = past_slots[-1]
        return slots + torch.fft.rfft(slots, dim=-1).abs().mean(-1, keepdim=True)  # FFT


def line_of(marker: str) -> str:
    """``file:line`` of the line of this file that carries ``marker``."""
    lines = Path(__file__).read_text().splitlines()
    (number,) = [index + 1 for index, line in enumerate(lines) if line.rstrip().endswith(f"# {marker}")]
    return f"{__file__}:{number}"


@pytest.fixture
def own() -> ComponentRegistry:
    registry = build_plugin_manager(load_entry_points=False).registry
    registry.current_plugin = PLUGIN
    for cls in (BranchingTransition, ItemLoopTransition, SpectralTransition):
        registry.add_transition(cls)
    return registry


def test_a_branch_on_a_tensor_value_fails_the_export_naming_component_plugin_and_line(own):
    model = build_tiny(tiny_model_config(transition="branching"), own)
    with pytest.raises(FrozenValueError) as error:
        export_graph(model, "step")
    message = str(error.value)
    assert f"the transition 'branching' ({__name__}.BranchingTransition, registered by plugin '{PLUGIN}')" in message
    assert f"{line_of('BRANCH')} `if past_features[-1].std() > 0.3:  # BRANCH`" in message
    assert "Converting a tensor to a Python boolean" in message and "torch.where" in message
    assert "Traceback" not in message and len(message.splitlines()) == 3  # the why, one line per place, the fix


def test_a_loop_count_from_item_fails_the_export(own):
    model = build_tiny(tiny_model_config(transition="item_loop"), own)
    with pytest.raises(FrozenValueError, match="Converting a tensor to a Python number") as error:
        export_graph(model, "step")
    assert line_of("ITEM") in str(error.value) and "the transition 'item_loop'" in str(error.value)


def test_the_first_step_graph_of_such_a_model_still_exports(own):
    """The first frame does not run the transition: only the graph that freezes a value fails."""
    export_graph(build_tiny(tiny_model_config(transition="branching"), own), "first_step")


def test_every_allowed_conversion_names_a_function_that_exists():
    """The allow-list is by module and function: a renamed function must not leave a stale entry behind."""
    for entry in ALLOWED_CONVERSIONS:
        target: object = importlib.import_module(entry.module)
        for part in entry.function.split("."):
            target = getattr(target, part)
        assert inspect.isfunction(target) or inspect.ismethoddescriptor(target), entry
        assert entry.reason, entry


def test_an_operator_onnx_lacks_is_named_with_the_component_and_line(own):
    model = build_tiny(tiny_model_config(transition="spectral"), own)
    with pytest.raises(UnsupportedOperatorError) as error:
        export_graph(model, "step")
    message = str(error.value)
    assert error.value.operator == "aten::fft_rfft"
    assert f"the transition 'spectral' ({__name__}.SpectralTransition, registered by plugin '{PLUGIN}')" in message
    assert f"calls aten::fft_rfft at {line_of('FFT')}" in message and "opset 17" in message
    assert isinstance(error.value, ExportError)


@pytest.fixture
def spectral_source(own, tmp_path, monkeypatch) -> Path:
    """A saved model with the FFT transition, which ``VideoSlotModel.from_pretrained`` finds in ``own``."""
    monkeypatch.setattr(plugins.manager, "_default_registry", own)
    torch.manual_seed(0)
    config = {**SERVICE_TINY_MODEL, "transition": "spectral"}
    VideoSlotModel(**config, registry=own).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_the_cli_reports_an_unsupported_operator_in_a_line_and_removes_the_folder_it_made(
    spectral_source, tmp_path, capfd
):
    """No TorchScript graph dump (hundreds of lines on stdout, written by PyTorch's C++ log)."""
    out = tmp_path / "exports" / "spectral"
    assert export_main(["--model", str(spectral_source), "--out", str(out)]) == 1
    printed = capfd.readouterr()
    assert printed.out == ""
    (line,) = printed.err.strip().splitlines()
    assert line.startswith("export failed: the step graph cannot be exported: the transition 'spectral'")
    assert "aten::fft_rfft" in line and "--backend torch" in line
    assert not (tmp_path / "exports").exists(), "folders the failed export created are removed"

    existing = tmp_path / "existing"
    existing.mkdir()
    assert export_main(["--model", str(spectral_source), "--out", str(existing)]) == 1
    assert existing.is_dir() and list(existing.iterdir()) == []


def test_check_exportable_runs_the_exports_tracing_and_operator_checks(own):
    check_exportable(tiny_model_config(transition={"name": "identity"}), own)
    with pytest.raises(ContractViolation, match=r"the transition 'branching' .*Python boolean"):
        check_exportable(tiny_model_config(transition="branching"), own)
    with pytest.raises(ContractViolation, match=r"the transition 'spectral' .* calls aten::fft_rfft"):
        check_exportable(build_tiny(tiny_model_config(transition="spectral"), own))


def test_check_exportable_names_what_to_install_without_onnx(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(
        ImportError, match=r"exports with onnx, which the export extra installs: pip install 'slotstream\[export\]'"
    ):
        check_exportable(tiny_model_config())


def test_an_export_of_a_frozen_branch_fails_before_publishing(own, tmp_path, monkeypatch):
    monkeypatch.setattr(plugins.manager, "_default_registry", own)
    torch.manual_seed(0)
    VideoSlotModel(**{**SERVICE_TINY_MODEL, "transition": "branching"}, registry=own).save_pretrained(tmp_path / "m")
    with pytest.raises(FrozenValueError, match="the step graph would freeze values"):
        export_model(tmp_path / "m", tmp_path / "out")
    assert not (tmp_path / "out").exists()
