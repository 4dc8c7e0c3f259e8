"""``check_exportable`` (:mod:`plugins.testing`): a component put through the export's checks on a tiny model."""

from __future__ import annotations

from typing import Any

from plugins.extras import install_command
from plugins.interfaces import ContractViolation
from plugins.model import VideoSlotModel
from plugins.registry import ComponentRegistry
from plugins.tiny_model import build_tiny


def check_exportable(
    config: dict[str, Any] | VideoSlotModel, registry: ComponentRegistry | None = None, *, tensorrt: bool = True
) -> None:
    """Export the model ``config`` (:func:`tiny_model_config`) to ONNX as ``python -m training.export`` does.

    Both graphs (``first_step`` and ``step``) are traced with the export's checks and then put through its
    operator check, and each is traced again and run at other batch sizes than the traced one (the batch axis
    is dynamic), as the export's parity run would; nothing is written but a temporary file, deleted again.

    Args:
        config: ``VideoSlotModel`` keyword arguments, or a built model.
        registry: where the component names resolve; default: the installed plugins.
        tensorrt: also require every operator to be one TensorRT takes (``False``: what ``python -m
            training.export --onnxruntime-only`` requires).

    Raises:
        ContractViolation: the export would fail or be wrong; the message is the export's (the component, its
            plugin and the line for a value the graph would freeze, an operator ONNX lacks, or a batch size it fixes
            with a Python loop or branch over ``x.shape[0]``: the graph is traced at one batch size and fails at
            another).
        ImportError: ``onnx`` or ``onnxscript`` is missing (the message says what to install).
    """
    import importlib.util

    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"check_exportable exports with {' and '.join(missing)}, which the export extra installs: "
            f"{install_command('export')}"
        )
    from training.export.batch_axis import fixed_batch_diagnosis
    from training.export.errors import ExportError
    from training.export.graphs import export_graph
    from training.export.operators import check_operators

    model = config if isinstance(config, VideoSlotModel) else build_tiny(config, registry)
    for which in ("first_step", "step"):
        try:
            report = check_operators(export_graph(model, which))
        except ExportError as error:
            raise ContractViolation(str(error)) from error
        except Exception as error:  # ONNX Runtime's errors (the export runs the graph at several batch sizes)
            if type(error).__module__.split(".")[0] != "onnxruntime":
                raise
            diagnosis = fixed_batch_diagnosis(model, which)
            raise ContractViolation(
                diagnosis or f"ONNX Runtime refused the exported {which} graph: {type(error).__name__}: {error}"
            ) from error
        diagnosis = fixed_batch_diagnosis(model, which)  # what the export's parity run at other batch sizes finds
        if diagnosis is not None:
            raise ContractViolation(diagnosis)
        refusal = report.refusal(which, tensorrt=tensorrt)
        if refusal is not None:
            raise ContractViolation(refusal)
