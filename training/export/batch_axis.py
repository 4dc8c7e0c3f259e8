"""Which component fixes the batch size of an exported graph, for the export's and ``check_exportable``'s errors.

The graphs are traced at one batch size (:data:`training.export.graphs.EXAMPLE_BATCH`) and their batch axis is
dynamic, so a component that fixes the batch size in Python (a loop or branch over ``x.shape[0]``) gives a graph
that fails or answers wrongly at every other batch size, and the runtime's error then names whichever later node
the wrong batch size reached. :func:`fixed_batch_diagnosis` traces the graph at two batch sizes and names the
component whose traced operations differ.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from plugins import VideoSlotModel
from plugins.model import COMPONENT_NAMES
from service.backends.manifest import FIRST_STEP, OUTPUT_MASKS, OUTPUT_SLOTS
from training.export.parity import FP32_MAX_ABS

DIAGNOSIS_BATCH_SIZES = (3, 5, 1, 8)
"""Batch sizes :func:`fixed_batch_diagnosis` tries by default: the export's reshape probes, then the parity's."""


def fixed_batch_diagnosis(
    model: VideoSlotModel, which: str, batch_sizes: Sequence[int] = DIAGNOSIS_BATCH_SIZES
) -> str | None:
    """Why the ``which`` graph of ``model``, traced at :data:`~training.export.graphs.EXAMPLE_BATCH`, fails at
    another batch size: the component whose traced code depends on the batch size, or ``None`` when it does not.

    The graph is traced with ``torch.jit.trace`` (the tracer of the ONNX export) at the traced batch size and run
    at each of ``batch_sizes`` until it raises there, answers another batch size or differs from the model (the
    failing batch size). The step is traced again at that size, and the components whose traced operations differ
    between the two traces are the ones that fix the batch size, with the first line where they differ. Costs two
    traces and a few calls of the model; never raises (a diagnosis that fails itself is ``None``).

    Args:
        model: the exported model (its train/eval mode is restored).
        which: ``"first_step"`` or ``"step"``.
        batch_sizes: the batch sizes to try, in order (the traced one is skipped).

    Returns:
        One sentence to report (it names both batch sizes, the component and what to change), or ``None``.
    """
    from training.export.graphs import EXAMPLE_BATCH, FirstStepGraph, StepGraph, example_inputs

    graph = FirstStepGraph(model) if which == FIRST_STEP else StepGraph(model)
    was_training = model.training
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        graph.eval()
        torch.backends.mha.set_fastpath_enabled(False)  # as the export traces: the fused kernels have no graph
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's warnings: the export itself reported those it must
            traced = _trace(graph, example_inputs(model, which, EXAMPLE_BATCH))
            failing = next(
                (
                    (batch, problem)
                    for batch in dict.fromkeys(batch_sizes)  # in order, once each
                    if batch != EXAMPLE_BATCH
                    and (problem := _traced_problem(graph, traced, example_inputs(model, which, batch))) is not None
                ),
                None,
            )
            if failing is None:
                return None
            batch, problem = failing
            culprits = _differing_components(traced, _trace(graph, example_inputs(model, which, batch)))
    except Exception:  # a courtesy on top of an error already found: never replace it with another
        return None
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        model.train(was_training)
    return _fixed_batch_message(model, which, EXAMPLE_BATCH, batch, problem, culprits)


def _trace(graph: torch.nn.Module, examples: tuple[torch.Tensor, ...]) -> torch.jit.ScriptModule:
    """``graph`` traced on ``examples`` after one plain call (constants a component computes lazily on its first
    call then exist, as in the export)."""
    graph(*examples)
    traced: torch.jit.ScriptModule = torch.jit.trace(  # type: ignore[no-untyped-call]
        graph, examples, check_trace=False, strict=False
    )
    return traced


def _traced_problem(
    graph: torch.nn.Module, traced: torch.jit.ScriptModule, examples: tuple[torch.Tensor, ...]
) -> str | None:
    """What goes wrong when ``traced`` runs on ``examples`` (another batch size than it was traced at): it raises,
    answers another batch size, or differs from ``graph`` itself; ``None`` when it answers as ``graph`` does."""
    batch = examples[0].shape[0]
    expected = graph(*examples)
    try:
        answered = traced(*examples)
    except Exception as error:  # TorchScript's interpreter error, the traced counterpart of ONNX Runtime's
        last = (str(error).strip().splitlines() or [""])[-1]  # TorchScript ends with "RuntimeError: <message>"
        kind = type(error).__name__
        return f"the traced graph raises {last if last.startswith(kind) else f'{kind}: {last}'}"
    for name, got, want in zip((OUTPUT_SLOTS, OUTPUT_MASKS), answered, expected, strict=True):
        if got.shape != want.shape:
            return f"its {name} come out {tuple(got.shape)} for {batch} frames instead of {tuple(want.shape)}"
        if not torch.allclose(got, want, atol=FP32_MAX_ABS, rtol=0.0):
            return f"its {name} differ from the model's by up to {float((got - want).abs().max()):.3g}"
    return None


def _differing_components(first: torch.jit.ScriptModule, second: torch.jit.ScriptModule) -> list[tuple[str, str]]:
    """``(role, "file:line")`` of each component whose operations differ between two traces of one graph (at two
    batch sizes), with the first line where they do; the model's own code has the role ``""``."""
    ours, theirs = _operations(first), _operations(second)
    differing = []
    for role in [*COMPONENT_NAMES, ""]:
        a, b = ours.get(role, []), theirs.get(role, [])
        if a == b:
            continue
        index = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x[:2] != y[:2]), min(len(a), len(b)))
        where = next((ops[index][2] for ops in (a, b) if index < len(ops) and ops[index][2]), "")
        differing.append((role, where))
    return differing


def _operations(traced: torch.jit.ScriptModule) -> dict[str, list[tuple[str, str, str]]]:
    """The traced operations of each component (by role; ``""`` for the model's own code), in order, as ``(kind,
    constant value, "file:line")``.

    A node belongs to the component of its scope; the ``prim::GetAttr`` nodes that fetch submodules and weights
    have no scope and belong to the component whose attribute they fetch (:func:`_attribute_owners`): a component
    that calls its ``nn.Linear`` once per batch row fetches its weights once per row, which is its own difference,
    not one of the model's code."""
    from training.export.tracing import caller_outside_torch  # the tracer's stack format, parsed there

    operations: dict[str, list[tuple[str, str, str]]] = {}
    graph = traced.inlined_graph  # built anew on each access
    owners = _attribute_owners(graph)
    for node in graph.nodes():
        parts = node.scopeName().split("/")[-1].split(".")  # "__module.model.transition[.inner...]"
        role = parts[2] if len(parts) > 2 and parts[1] == "model" and parts[2] in COMPONENT_NAMES else ""
        if node.kind() == "prim::GetAttr":
            role = owners.get(node.output().debugName(), "")
        value = ""
        if node.kind() == "prim::Constant" and node.outputsSize() == 1:
            value = repr(node.output().toIValue())
        operations.setdefault(role, []).append((node.kind(), value, caller_outside_torch(str(node.sourceRange()))))
    return operations


def _attribute_owners(graph: torch.Graph) -> dict[str, str]:
    """Output name of each ``prim::GetAttr`` node of ``graph`` -> the role of the component whose attribute it
    fetches (``""``: the wrapped model itself, or an attribute of the graph module or the model outside the
    components).

    The chain starts at the graph module (``self``): ``self.model`` is the model, ``model.<role>`` a component,
    and every attribute fetched from a component's value (a submodule, a weight) belongs to that component.
    """
    model = "<model>"  # the owner of the wrapped model's own value: neither a role nor the graph module
    owners: dict[str, str] = {}
    for node in graph.nodes():
        if node.kind() != "prim::GetAttr":
            continue
        parent, name = owners.get(node.input().debugName()), node.s("name")
        if parent is None:  # fetched from the graph module
            owner = model if name == "model" else ""
        elif parent == model:
            owner = name if name in COMPONENT_NAMES else ""
        else:
            owner = parent
        owners[node.output().debugName()] = owner
    return {value: "" if owner == model else owner for value, owner in owners.items()}


def _fixed_batch_message(
    model: VideoSlotModel, which: str, traced: int, batch: int, problem: str, culprits: list[tuple[str, str]]
) -> str:
    """The diagnosis: both batch sizes, what went wrong, the components (``culprits``: role and line) and the fix."""
    from training.export.tracing import describe_component

    who = " and ".join(
        f"{describe_component(model, role or None)} fixes the batch size"
        + (f" (its traced operations first differ at {where})" if where else "")
        for role, where in culprits
    )
    return (
        f"the {which} graph was traced at batch {traced} and fails at batch {batch} ({problem}): "
        f"{who or 'a component fixes the batch size'}, e.g. with a "
        "Python loop or branch over x.shape[0], which the trace records for the traced batch only. The batch axis "
        "of the exported graphs is dynamic: process the batch with tensor operations (no Python loop or branch "
        "over it)"
    )
