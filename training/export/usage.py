"""How to use an export's graphs from another runtime: the manifest's ``usage`` block and the graphs' own metadata.

The manifest's ``input`` says what to feed; ``usage`` says how to call the two graphs and read what they give, as
data a program can check (:func:`usage_block`):

- ``calls``: ``first_step`` on a stream's first frame, ``step`` on every later one with ``prev_slots`` the
  ``slots`` row the previous call gave for that stream; nothing else carries over between calls.
- ``batch``: at least one row; every input of a call has the same batch size (the ``step`` graph fails
  otherwise); rows are independent, so streams may share calls in any grouping.
- ``masks``: soft masks at the decoder's grid, probabilities over the slots (each pixel's ``K`` values sum to 1),
  covering the whole model input (the fitted frame).
- ``segmentation``: the service's map: the masks resized bilinearly (``align_corners=False``, no antialiasing)
  to the output size, then each pixel given to the lowest-numbered slot within ``tie_tolerance`` of its largest
  mask (:func:`plugins.segmentation.segment`), not a plain argmax, which float rounding decides at near-ties.
- ``frame_fit``: the fit the service applies to a stream that chooses none when the server's ``--frame-fit`` is
  ``auto`` (its default): the model's recorded fit, ``stretch`` for a model that records none.

Each ``.onnx`` file carries the same facts in its ``metadata_props`` (:func:`graph_metadata`: ``slotstream.usage``,
the JSON of the block, ``slotstream.graph``, which graph it is, ``slotstream.input``, the frames input, and
``slotstream.source_version``, the exported model's version, which the runtimes check against the manifest), with
the producer named (:data:`PRODUCER_NAME` and the installed slotstream's version), so a graph copied away from its
manifest still says how to call it.
"""

from __future__ import annotations

import importlib.metadata
import json
from typing import TYPE_CHECKING, Any

from plugins.manager import PROJECT_DISTRIBUTION
from plugins.segmentation import SEGMENTATION_TIE_TOLERANCE
from service.backends.graph_metadata import GRAPH_KEY, INPUT_KEY, SOURCE_KEY, USAGE_KEY
from service.backends.manifest import (
    FIRST_STEP,
    INPUT_FRAMES,
    INPUT_PREV_SLOTS,
    OUTPUT_MASKS,
    OUTPUT_SLOTS,
    STEP,
    InputSpec,
)
from service.types import OUTSIDE_VIEW

if TYPE_CHECKING:
    import onnx

    from plugins import VideoSlotModel

#: The ``producer_name`` of the exported graphs.
PRODUCER_NAME = "slotstream training.export"
#: The frame fit the service gives a stream of a model that records none (``--frame-fit auto``).
UNRECORDED_FRAME_FIT = "stretch"


def usage_block(model: VideoSlotModel) -> dict[str, Any]:
    """The manifest's ``usage`` block for ``model`` (the module docstring says what each part means).

    Returns:
        A JSON-serialisable object.
    """
    fit = model.frame_fit
    return {
        "calls": {
            "first_frame": FIRST_STEP,
            "later_frames": STEP,
            "state_input": INPUT_PREV_SLOTS,
            "state_from_output": OUTPUT_SLOTS,
            "state_from": "the previous call's row for the same stream",
            "other_state": False,
        },
        "batch": {"min": 1, "inputs_same_batch": True, "rows_independent": True},
        "masks": {
            "output": OUTPUT_MASKS,
            "values": "probabilities over slots",
            "slot_axis": 1,
            "sum_over_slots": 1.0,
            "kind": model.decoder.mask_kind,
            "size": list(model.mask_grid),
            "covers": "the whole model input",
        },
        "segmentation": {
            "resize": {"mode": "bilinear", "align_corners": False, "antialias": False},
            "rule": "lowest slot within tie_tolerance of the pixel's largest mask",
            "tie_tolerance": SEGMENTATION_TIE_TOLERANCE,
            "outside_view": OUTSIDE_VIEW,
        },
        "frame_fit": {"effective": fit or UNRECORDED_FRAME_FIT, "recorded": fit is not None},
        "notes": (
            f"Call {FIRST_STEP} on a stream's first frame and {STEP} on every later frame, feeding {INPUT_PREV_SLOTS} "
            f"the {OUTPUT_SLOTS} row the previous call gave for that stream; nothing else carries over. Batches hold "
            "at least one row, the same number in every input; rows are independent. masks are probabilities over "
            "the slots (axis 1, summing to 1) on the decoder's grid, covering the whole model input; the service's "
            "segmentation resizes them bilinearly (align_corners=False, no antialiasing) to the output size and gives "
            "each pixel the lowest-numbered slot within tie_tolerance of its largest mask. frame_fit.effective is the "
            "fit the service gives streams that choose none under its default --frame-fit auto "
            f"({UNRECORDED_FRAME_FIT} when the model records none); with crop, output pixels outside the crop get "
            f"segmentation {OUTSIDE_VIEW} and soft masks 0; with pad, the masks cover the padded canvas and the "
            "service keeps the part over the frame."
        ),
    }


def graph_metadata(which: str, usage: dict[str, Any], frames: InputSpec, source_version: str) -> dict[str, str]:
    """The ``metadata_props`` of the ``which`` graph (:mod:`service.backends.graph_metadata`): ``GRAPH_KEY``,
    ``USAGE_KEY`` (``usage`` as JSON), ``INPUT_KEY`` (the frames input: name, size, layout, channels, dtype and value
    range, as JSON) and ``SOURCE_KEY`` (``source_version``, the exported model's version)."""
    described = {
        "name": INPUT_FRAMES,
        "height": frames.height,
        "width": frames.width,
        "layout": frames.layout,
        "channels": frames.channels,
        "dtype": frames.dtype,
        "value_range": list(frames.value_range),
        "inside_graph": frames.inside_graph,
    }
    return {
        GRAPH_KEY: which,
        USAGE_KEY: json.dumps(usage, sort_keys=True),
        INPUT_KEY: json.dumps(described, sort_keys=True),
        SOURCE_KEY: source_version,
    }


def stamp_graph(proto: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Name the producer of ``proto`` and set ``metadata`` in its ``metadata_props`` (replacing entries of the same
    keys), in place."""
    proto.producer_name = PRODUCER_NAME
    proto.producer_version = _project_version()
    kept = [entry for entry in proto.metadata_props if entry.key not in metadata]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _project_version() -> str:
    """The installed slotstream's version; ``"unknown"`` in a source tree that was never installed."""
    try:
        return importlib.metadata.version(PROJECT_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
