"""The checks of a manifest's ``input`` object against what the graphs take and what every runtime feeds them.

The graphs take float32 NCHW RGB frames in ``[0, 1]`` (:data:`SERVED_INPUT`) and normalise them inside the graph;
:func:`check_input` refuses an ``input`` that says otherwise (a manifest edited by hand).
:meth:`service.backends.manifest.Manifest.check_input` delegates here, and
:meth:`~service.backends.manifest.Manifest.from_json` runs it on every manifest read; the constants here are
re-exported by :mod:`service.backends.manifest`, their public home.

Only the standard library is imported here (and the records of :mod:`service.backends.manifest_records`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from service.backends.manifest_records import INPUT_FRAMES, GraphSpec, InputSpec, ManifestError

#: The dtype of every graph input and output (the graphs are fp32; ``precision`` is for engines built from them).
GRAPH_DTYPE = "float32"
SERVED_LAYOUT = "NCHW"
SERVED_CHANNELS = "RGB"
SERVED_VALUE_RANGE = (0.0, 1.0)
#: What every runtime feeds the ``frames`` input: ``input`` field -> its only value (:func:`check_input`).
SERVED_INPUT: dict[str, str | tuple[float, float]] = {
    "layout": SERVED_LAYOUT,
    "channels": SERVED_CHANNELS,
    "dtype": GRAPH_DTYPE,
    "value_range": SERVED_VALUE_RANGE,
}
#: How every exporter ended ``input.inside_graph``: the normalisation is the graph's own.
INSIDE_GRAPH_SUFFIX = "inside the graph"


def check_input(spec: InputSpec, graphs: Mapping[str, GraphSpec], source_config: dict[str, Any]) -> None:
    """Check that a manifest's ``input`` describes what the graphs take and what the runtimes feed them.

    The graphs take float32 ``frames [batch, 3, H, W]`` (recorded in their entries, checked by
    :meth:`~service.backends.manifest.Manifest.check_shapes`), and every backend feeds them decoded RGB frames
    scaled to ``[0, 1]`` as float32 NCHW (:data:`SERVED_INPUT`), which the graph normalises itself. A manifest
    saying otherwise (``NHWC``, ``float16``, ``[0, 255]``, ``BGR``, no normalisation inside the graph) was edited
    by hand, and another runtime following it would feed the graphs wrongly while the service serves them as
    exported. Every recorded graph input and output must be float32 too: the graphs are fp32 (``precision`` says
    which engines accelerated runtimes build from them).

    ``inside_graph`` is a description: it must say that the normalisation is ``inside the graph``, as every
    exporter wrote it, and name the source's encoder (``source.config``'s ``encoder.name``) when the source
    records one.

    Args:
        spec: the manifest's ``input``.
        graphs: the manifest's ``graphs``, whose recorded inputs and outputs are checked too.
        source_config: the manifest's ``source.config``, which names the encoder.

    Raises:
        ManifestError: naming the field, its value and what the graphs have or the runtimes feed.
    """
    for graph_name, graph in graphs.items():
        for kind, tensors in (("inputs", graph.inputs), ("outputs", graph.outputs)):
            for index, tensor in enumerate(tensors):
                if tensor.dtype != GRAPH_DTYPE:
                    raise ManifestError(
                        f"graphs.{graph_name}.{kind}[{index}].dtype is {tensor.dtype!r}, but the exported graphs "
                        f"take and give {GRAPH_DTYPE} (fp16 engines are built from them at load: precision "
                        "says so); re-run python -m training.export"
                    )
    frames = next(
        (tensor for graph in graphs.values() for tensor in graph.inputs if tensor.name == INPUT_FRAMES), None
    )
    has = f"the graphs' {INPUT_FRAMES} input is {frames.dtype} {list(frames.shape)}, and " if frames else ""
    low, high = spec.value_range
    recorded: dict[str, str | tuple[float, float]] = {
        "layout": spec.layout,
        "channels": spec.channels,
        "dtype": spec.dtype,
        "value_range": (low, high),
    }
    for name, served in SERVED_INPUT.items():
        if recorded[name] != served:
            raise ManifestError(
                f"input.{name} is {_json_value(recorded[name])}, but {has}every runtime feeds the graphs "
                f"{_served_input()}: input.{name} must be {_json_value(served)} (a manifest edited by hand; "
                "re-run python -m training.export)"
            )
    encoder = _encoder_name(source_config)
    inside = spec.inside_graph
    described = isinstance(inside, str) and inside.endswith(INSIDE_GRAPH_SUFFIX)
    if not described or (encoder is not None and encoder not in inside):
        whose = f"the source's {encoder} encoder's" if encoder else "the source encoder's"
        naming = f" names {encoder} and" if encoder else ""
        raise ManifestError(
            f"input.inside_graph is {json.dumps(inside)}, but the graphs normalise the [0, 1] frames themselves "
            f"({whose} normalisation, exported into them): the export's description of it{naming} ends "
            f"{INSIDE_GRAPH_SUFFIX!r} (a manifest edited by hand; re-run python -m training.export)"
        )


def _json_value(value: str | tuple[float, float]) -> str:
    """``value`` as the manifest's JSON writes it (a range as a list)."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _served_input() -> str:
    """:data:`SERVED_INPUT` in words."""
    low, high = SERVED_VALUE_RANGE
    return f"{GRAPH_DTYPE} {SERVED_LAYOUT} {SERVED_CHANNELS} frames in [{low:g}, {high:g}]"


def _encoder_name(config: dict[str, Any]) -> str | None:
    """The encoder's registry name in a model config (``config["encoder"]["name"]``), ``None`` where it has none."""
    encoder = config.get("encoder") if isinstance(config, dict) else None
    name = encoder.get("name") if isinstance(encoder, dict) else None
    return name if isinstance(name, str) and name else None
