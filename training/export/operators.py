"""Static checks of an exported graph: the operators it uses, and whether TensorRT can take every one of them.

The supported set is TensorRT's ONNX parser support matrix (``onnx/onnx-tensorrt``, ``docs/operators.md`` for
TensorRT 10.15: opsets 9 to 24, the rows marked ``Y``). On top of that matrix the serving path forbids:

- control flow (``If``, ``Loop``, ``Scan``, and any node carrying a subgraph): CUDA graphs cannot capture it and
  TensorRT falls back to slow paths; Slot Attention iterations must be unrolled at export;
- random operators: a served step must be a pure function of its inputs;
- ``Resize`` modes TensorRT rejects (cubic interpolation, antialiasing);
- operators outside the default ONNX domain (custom ops need plugins that we do not ship).

The problems only TensorRT has (an operator or ``Resize`` mode outside its matrix, an opset outside the range it
parses) are also listed apart (:attr:`OperatorReport.tensorrt_only`): ONNX Runtime runs such graphs, and
``python -m training.export --onnxruntime-only`` records them in the manifest instead of failing (the ``tensorrt``
backend then refuses the export). Control flow, random and custom operators fail every export.

Each problem names the node and, where its name says it (``/transition/Det``: the exporter names a node after the
module that ran it, the model component first), the component that put it there: its role, or what the caller
passes as ``components`` (the role's registry name, class and plugin).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from plugins.model import COMPONENT_NAMES

if TYPE_CHECKING:
    import onnx

#: Where :data:`TENSORRT_SUPPORTED_OPS` comes from.
TENSORRT_OPS_SOURCE = "onnx/onnx-tensorrt docs/operators.md, TensorRT 10.15 (opsets 9-24)"
#: Opsets the parser of :data:`TENSORRT_OPS_SOURCE` accepts.
TENSORRT_OPSET_RANGE = (9, 24)

_SUPPORTED_MATRIX_ROWS = """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization
    BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh
    CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten
    Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater
    GreaterOrEqual GridSample GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish Hardmax
    Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
    LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish
    Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
    RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
    ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
    ReverseSequence RMSNormalization RNN RoiAlign RotaryEmbedding Round STFT ScaledTanh Scan Scatter
    ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign
    SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh TensorScatter ThresholdedRelu Tile TopK Transpose Trilu
    Unsqueeze Upsample Where Xor
"""
#: ONNX operators (default domain) that TensorRT 10.15's ONNX parser supports.
TENSORRT_SUPPORTED_OPS: frozenset[str] = frozenset(_SUPPORTED_MATRIX_ROWS.split())

#: Dynamic control flow: forbidden in served graphs even though TensorRT parses it.
CONTROL_FLOW_OPS: frozenset[str] = frozenset({"If", "Loop", "Scan"})
#: Operators whose output is random: forbidden in served graphs.
RANDOM_OPS: frozenset[str] = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike"})
#: ``Resize`` modes TensorRT implements.
TENSORRT_RESIZE_MODES: frozenset[str] = frozenset({"nearest", "linear"})

_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class OperatorReport:
    """What a graph uses, and every reason TensorRT or the serving path would reject it.

    Attributes:
        operators: operator type -> number of nodes (default domain; other domains as ``domain::Type``).
        opset: the default-domain opset the graph imports.
        problems: human-readable problems; empty when the graph passes.
        tensorrt_only: those of :attr:`problems` that only TensorRT has (ONNX Runtime runs the graph anyway).
    """

    operators: dict[str, int]
    opset: int
    problems: list[str] = field(default_factory=list)
    tensorrt_only: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the graph passed every check."""
        return not self.problems

    @property
    def serving_problems(self) -> list[str]:
        """The problems that rule the graph out for every runtime (:attr:`problems` less :attr:`tensorrt_only`)."""
        return [problem for problem in self.problems if problem not in self.tensorrt_only]

    def refusal(self, which: str, *, tensorrt: bool) -> str | None:
        """Why the ``which`` graph cannot be served, as the export and ``plugins.testing.check_exportable`` say it.

        Args:
            which: the graph's name (``first_step`` or ``step``).
            tensorrt: whether it must be served with TensorRT too (every problem counts), or by ONNX Runtime alone
                (``--onnxruntime-only``: only :attr:`serving_problems` count).

        Returns:
            ``None`` when no problem counts. Else, where a problem rules the graph out for every runtime (control
            flow, a random or custom operator), ``"the <which> graph cannot be served:"`` and those problems, one
            per indented line, then (with ``tensorrt``) ``"TensorRT also refuses it:"`` and TensorRT's own, so that
            a random operator is not put down to TensorRT; where only TensorRT's problems count, ``"the <which>
            graph cannot be served with TensorRT:"`` and those.
        """
        serving, tensorrt_only = self.serving_problems, self.tensorrt_only if tensorrt else []
        if serving:
            refusal = f"the {which} graph cannot be served:\n  " + "\n  ".join(serving)
            if tensorrt_only:
                refusal += "\nTensorRT also refuses it:\n  " + "\n  ".join(tensorrt_only)
            return refusal
        if tensorrt_only:
            return f"the {which} graph cannot be served with TensorRT:\n  " + "\n  ".join(tensorrt_only)
        return None


def check_operators(model: onnx.ModelProto, components: Mapping[str, str] | None = None) -> OperatorReport:
    """List the operators of ``model`` and check them against TensorRT and the serving rules above.

    Args:
        model: a loaded ONNX model.
        components: how to name each model component in the problems, by role (``{"transition": "the
            transition 'jumpy' (my_plugin.Jumpy, registered by plugin 'my_plugin')"}``, as
            :func:`training.export.tracing.component_descriptions` gives them); a role left out is named by its
            role alone (``the transition``).

    Returns:
        The report; it never raises for an unsupported graph, the caller decides (see :attr:`OperatorReport.ok`).
    """
    import onnx

    opset = next((entry.version for entry in model.opset_import if entry.domain in _DEFAULT_DOMAINS), 0)
    counts: Counter[str] = Counter()
    problems: list[str] = []
    tensorrt_only: list[str] = []
    low, high = TENSORRT_OPSET_RANGE
    if not low <= opset <= high:
        tensorrt_only.append(f"opset {opset} is outside the range TensorRT parses ({low}-{high})")
    for node in model.graph.node:
        where = _node(node.name, components or {})
        if node.domain not in _DEFAULT_DOMAINS:
            counts[f"{node.domain}::{node.op_type}"] += 1
            problems.append(f"{where}: {node.domain}::{node.op_type} is a custom operator")
            continue
        counts[node.op_type] += 1
        subgraphs = [
            a.name for a in node.attribute if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        ]
        if node.op_type in CONTROL_FLOW_OPS or subgraphs:
            problems.append(f"{where}: {node.op_type} is dynamic control flow (unroll it at export)")
        elif node.op_type in RANDOM_OPS:
            problems.append(f"{where}: {node.op_type} is random; served steps must be deterministic")
        elif node.op_type not in TENSORRT_SUPPORTED_OPS:
            tensorrt_only.append(f"{where}: {node.op_type} is not supported by TensorRT ({TENSORRT_OPS_SOURCE})")
        elif node.op_type == "Resize":
            tensorrt_only += _resize_problems(node, where)
    return OperatorReport(
        operators=dict(sorted(counts.items())),
        opset=opset,
        problems=problems + tensorrt_only,
        tensorrt_only=tensorrt_only,
    )


def _node(name: str, components: Mapping[str, str]) -> str:
    """``node '/transition/Det' of the transition ...``: the node and, where its name's first segment is a model
    component's role, that component (``components[role]``, else the role); a node of the model's own code
    (``/Resize``) says so; any other name stands alone."""
    parts = name.split("/")
    if len(parts) < 2 or parts[0]:  # not the exporter's "/<module>/.../<Op>" (a graph built by hand)
        return f"node {name!r}"
    if len(parts) == 2:  # "/<Op>": no module below the graph's own
        return f"node {name!r} of the model's own code"
    role = parts[1]
    if role not in COMPONENT_NAMES:
        return f"node {name!r}"
    return f"node {name!r} of {components.get(role, f'the {role}')}"


def _resize_problems(node: onnx.NodeProto, where: str) -> list[str]:
    import onnx

    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    mode = attributes.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    problems = []
    remedy = "resize before the graph instead (e.g. a model whose image_size equals its encoder's input size)"
    if mode not in TENSORRT_RESIZE_MODES:
        problems.append(f"{where}: Resize mode {mode!r} is not supported by TensorRT (nearest, linear); {remedy}")
    if attributes.get("antialias", 0):
        problems.append(f"{where}: antialiased Resize is not supported by TensorRT; {remedy}")
    return problems
