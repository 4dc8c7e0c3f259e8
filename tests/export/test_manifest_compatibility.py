"""``manifest.json`` across releases: what this exporter writes reads in the previous release's server, and this
reader ignores what a newer exporter adds (the compatibility policy of ``service.backends.manifest``)."""

from __future__ import annotations

import json

import pytest

from plugins.frame_fit import FrameFitName
from service.backends.manifest import (
    GraphSpec,
    InputSpec,
    Manifest,
    ParityReport,
    SourceSpec,
    TensorSpec,
)

PREVIOUS_INPUT_FIELDS = {
    "height",
    "width",
    "outside_graph",
    "inside_graph",
    "layout",
    "channels",
    "dtype",
    "value_range",
}
"""``InputSpec``'s fields in the release before ``frame_fit``, whose reader did ``InputSpec(**raw["input"])``."""
PREVIOUS_TENSOR_FIELDS = {"name", "shape", "dtype"}
PREVIOUS_SOURCE_FIELDS = {"version", "weights_sha256", "config"}


def manifest(frame_fit: FrameFitName | None = None) -> Manifest:
    """A small consistent manifest: 8x8 frames, 2 slots of 4, 2x2 masks."""
    frames = TensorSpec("frames", ["batch", 3, 8, 8])
    outputs = [TensorSpec("slots", ["batch", 2, 4]), TensorSpec("masks", ["batch", 2, 2, 2])]
    graphs = {
        "first_step": GraphSpec("first_step.onnx", "0" * 64, [frames], outputs, {"Conv": 1}),
        "step": GraphSpec(
            "step.onnx", "1" * 64, [frames, TensorSpec("prev_slots", ["batch", 2, 4])], outputs, {"Conv": 1}
        ),
    }
    parity = ParityReport(
        runtime="onnxruntime",
        frames=3,
        videos=2,
        slots_max_abs=1e-6,
        masks_max_abs=1e-6,
        argmax_agreement=1.0,
        argmax_tied=0.0,
        argmax_agreement_all=1.0,
        batch_sizes=[1, 3],
        passed=True,
        max_abs_threshold=1e-4,
        agreement_threshold=0.999,
        tie_tolerance=1e-4,
    )
    return Manifest(
        input=InputSpec(
            height=8, width=8, outside_graph="decode", inside_graph="x * 2 - 1, inside the graph", frame_fit=frame_fit
        ),
        num_slots=2,
        slot_dim=4,
        mask_size=(2, 2),
        first_iters=3,
        later_iters=1,
        opset=17,
        precision="fp32",
        graphs=graphs,
        source=SourceSpec(version="v", weights_sha256="2" * 64, config={}),
        parity={"onnxruntime": parity},
    )


def test_a_manifest_without_a_frame_fit_writes_no_key_the_previous_reader_refuses():
    raw = json.loads(manifest().to_json())
    assert "frame_fit" not in raw["input"]
    assert set(raw["input"]) <= PREVIOUS_INPUT_FIELDS, "the previous release's InputSpec(**raw) would refuse it"
    for graph in raw["graphs"].values():
        assert all(set(spec) <= PREVIOUS_TENSOR_FIELDS for spec in (*graph["inputs"], *graph["outputs"]))
    assert set(raw["source"]) <= PREVIOUS_SOURCE_FIELDS
    assert Manifest.from_json(manifest().to_json()) == manifest()


def test_a_recorded_frame_fit_is_written_and_read_back():
    raw = json.loads(manifest("crop").to_json())
    assert raw["input"]["frame_fit"] == "crop"
    assert Manifest.from_json(manifest("crop").to_json()).input.frame_fit == "crop"


@pytest.mark.parametrize("where", ["top level", "input", "source", "tensor spec", "parity record"])
def test_keys_a_newer_exporter_adds_are_ignored(where):
    raw = json.loads(manifest("pad").to_json())
    target = {
        "top level": raw,
        "input": raw["input"],
        "source": raw["source"],
        "tensor spec": raw["graphs"]["step"]["inputs"][1],
        "parity record": raw["parity"]["onnxruntime"],
    }[where]
    target["added_by_a_newer_exporter"] = {"any": ["value"]}
    assert Manifest.from_json(json.dumps(raw)) == manifest("pad")


def test_fields_added_since_the_first_release_read_as_their_defaults_when_missing():
    raw = json.loads(manifest().to_json())
    del raw["tensorrt_problems"]
    for name in ("build", "reference_slots_max_abs", "first_frame_over_limit"):
        del raw["parity"]["onnxruntime"][name]
    read = Manifest.from_json(json.dumps(raw))
    assert read.tensorrt_problems == [] and read.input.frame_fit is None
    assert read.parity["onnxruntime"] == manifest().parity["onnxruntime"]
