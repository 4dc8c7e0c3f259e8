"""What each exported ONNX graph says about itself in its ``metadata_props``, and the check that it is what the
manifest files it as (:func:`check_graph_metadata`): the graph the file is, the manifest's ``usage`` block, and the
version of the model it was exported from. The export writes them (``training.export.usage.graph_metadata``); a
runtime that loads a graph checks them, so a manifest whose entries were swapped, or that names a graph of another
model (its SHA-256 edited to match), is refused rather than served."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from service.backends.manifest_records import ManifestError

if TYPE_CHECKING:
    from service.backends.manifest import Manifest

GRAPH_KEY = "slotstream.graph"
"""Which graph the file is: ``first_step`` or ``step``."""
USAGE_KEY = "slotstream.usage"
"""The manifest's ``usage`` block, as JSON."""
INPUT_KEY = "slotstream.input"
"""The frames input (name, size, layout, channels, dtype, value range), as JSON."""
SOURCE_KEY = "slotstream.source_version"
"""The version of the model the graph was exported from (the manifest's ``source.version``); absent from graphs
exported before it was recorded."""

_REEXPORT = "re-run python -m training.export"


def check_graph_metadata(manifest: Manifest, graph: str, metadata: Mapping[str, str]) -> None:
    """Check that the graph the manifest files as ``graph`` says it is that graph, of the manifest's usage and source
    model (``metadata``: its ``metadata_props``). A key the graph lacks is not checked (graphs of other tools,
    exports from before it was written).

    Raises:
        ManifestError: the graph says otherwise, naming the manifest's entry, the file and both values.
    """
    spec = manifest.graphs[graph]
    where = f"the manifest's {graph} graph, {spec.file},"
    said = metadata.get(GRAPH_KEY)
    if said is not None and said != graph:
        raise ManifestError(f"{where} is a {said} graph by its own metadata; {_REEXPORT}")
    source = metadata.get(SOURCE_KEY)
    if source is not None and source != manifest.source.version:
        raise ManifestError(
            f"{where} was exported from model version {source}, but the manifest's source.version is "
            f"{manifest.source.version}: the export mixes graphs of two models; {_REEXPORT}"
        )
    usage = metadata.get(USAGE_KEY)
    if usage is not None and manifest.usage and json.loads(usage) != manifest.usage:
        raise ManifestError(f"{where} carries another usage block than the manifest's; {_REEXPORT}")


__all__ = ["GRAPH_KEY", "INPUT_KEY", "SOURCE_KEY", "USAGE_KEY", "check_graph_metadata"]
