"""What tracing cannot carry into a graph: tensor values turned into Python values, and operators ONNX lacks.

The TorchScript exporter records the tensor operations that one run of the model on an example input performs.
Python code that turns a tensor into a Python value (``if x.std() > t:``, ``range(int(n.item()))``,
``float(x)``) runs only on that example: the graph keeps the branch it took, the loop count or the number as a
constant, and the exported step differs from PyTorch on every input that would have gone another way. PyTorch
says so with a ``torch.jit.TracerWarning``; :func:`recording_frozen_values` records them during the export, and
every one not raised at a place of :data:`ALLOWED_CONVERSIONS` fails the export (:class:`FrozenValueError`),
naming the component, its plugin and the line.

The allow-list holds the places the shipped models and every built-in component reach today (``python -m
training.export`` on every shipped config and component: ``tests/export/test_export_configs.py``) and the size
checks of PyTorch's recurrent layers, which plugins' transitions use (``nn.GRU``, ``nn.LSTM``, ``nn.RNN``:
``tests/export/test_recurrent_layer_export.py``); each converts something fixed by the model's config (a frame
size, a channel count) or something that cannot change the outputs (an assertion, a size check that only decides
whether to raise, a formatted message). A new entry needs the same argument: the value must be the same for every
input the graph gets, whose only dynamic axis is the batch, or must never reach the outputs.

A conversion inside PyTorch's own code is reported as such (``inside`` the PyTorch function, at the plugin's line
that called it): the plugin cannot rewrite PyTorch, so the message says to look at what that line passes in.

An operator the exporter cannot convert fails with :class:`UnsupportedOperatorError`, which names the
operator, the component that called it and the line (found by tracing the step once more with
``torch.jit.trace``, whose graph records both).
"""

from __future__ import annotations

import contextlib
import linecache
import os
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TextIO

import torch
from torch import nn

from plugins import VideoSlotModel
from plugins.contracts import component_name
from plugins.model import COMPONENT_NAMES
from training.export.errors import ExportError

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
#: How many findings (or how many frames of a call stack) a message lists.
MAX_LISTED = 5


@dataclass(frozen=True)
class AllowedConversion:
    """A place whose tracer warnings are known to be harmless.

    Attributes:
        module: the module of the code that converts (the ``__name__`` of its file).
        function: the converting function's qualified name in that module.
        reason: why the constant the graph keeps is right for every input the graph can get.
    """

    module: str
    function: str
    reason: str


ALLOWED_CONVERSIONS: tuple[AllowedConversion, ...] = (
    AllowedConversion(
        "plugins.model",
        "VideoSlotModel._target",
        "compares the frame size with the decoder's target grid; both are fixed by the config",
    ),
    AllowedConversion(
        "plugins.builtin.decoders.alpha",
        "composite",
        "checks whether a decoder outputs channels after the alpha logit: a channel count fixed by the config",
    ),
    AllowedConversion(
        "plugins.builtin.encoders.dinov2",
        "DINOv2Encoder.forward",
        "compares the frame size with the ViT's input size; both are fixed by the config",
    ),
    AllowedConversion(
        "plugins.builtin.initializers.preheat",
        "SmoothSAPreheat.forward",
        "reads the detach_features training flag; both branches compute the same values (one only stops the gradient)",
    ),
    AllowedConversion(
        "torch.nn.functional",
        "multi_head_attention_forward",
        "nn.MultiheadAttention checks its embedding size and the key and value shapes and scales by the head "
        "size: all fixed by the layer's sizes",
    ),
    AllowedConversion(
        "torch.nn.modules.rnn",
        "RNNBase.check_input",
        "nn.RNN, nn.GRU and nn.LSTM compare the input's last size with the layer's input_size, both fixed by the "
        "config; the comparison only decides whether to raise, so the graph's outputs never depend on it",
    ),
    AllowedConversion(
        "torch.nn.modules.rnn",
        "RNNBase.check_hidden_size",
        "nn.RNN, nn.GRU and nn.LSTM compare the initial state's shape with (layers x directions, the input's batch "
        "size, hidden size): the layer counts and widths are fixed by the config, and both batch sizes are taken "
        "from the graph's one batch axis; the comparison only decides whether to raise, so the graph's outputs "
        "never depend on it",
    ),
    AllowedConversion(
        "torch",
        "_assert",
        "an assertion (timm's patch embedding checks the frame size): the graph leaves the check out, and its "
        "outputs never depend on it",
    ),
    AllowedConversion(
        "torch._tensor",
        "Tensor.__format__",
        "a tensor formatted into a message (timm's patch embedding assertions): text never reaches the graph",
    ),
)
"""Where a tracer warning does not fail the export, and why."""

_REMEDY = (
    "Compute it with tensor operations instead (torch.where(condition, a, b), a mask, clamp, a fixed number of "
    "iterations) and keep Python branches and loop counts to shapes and config values"
)
_TORCH_REMEDY = (
    "A conversion inside PyTorch happens in PyTorch's own code, not in the plugin's: check what the plugin's line "
    "passes to that function (a tensor where it takes a Python number or size makes it convert; pass a config value "
    "or a shape instead) or use another function; a PyTorch function that only checks sizes the config fixes "
    "belongs on the export's allow-list (training.export.tracing.ALLOWED_CONVERSIONS), with that reason"
)


@dataclass(frozen=True)
class FrozenValue:
    """A tensor value the tracer turned into a Python value, which the graph would keep as a constant.

    Attributes:
        conversion: PyTorch's description, e.g. ``Converting a tensor to a Python boolean``.
        location: ``file:line`` of the code outside PyTorch that converted (or called the PyTorch function
            that did).
        code: that line's source ('' when unavailable).
        inside: the PyTorch function the conversion happened in, when not at ``location`` itself (PyTorch's own
            code converted, called from ``location``); else ''.
        component: the model component that ran it (role, registry name, class and plugin).
    """

    conversion: str
    location: str
    code: str
    inside: str
    component: str

    def describe(self) -> str:
        """One line: who, where, what."""
        code = f" `{self.code}`" if self.code else ""
        inside = f" (inside {self.inside}, PyTorch's own code)" if self.inside else ""
        return f"{self.component} at {self.location}{code}{inside}: {self.conversion}"


class FrozenValueError(ExportError):
    """The graph would keep values that depend on its inputs as constants; :attr:`findings` lists where.

    The message ends with what to do: rewrite the plugin's code for a conversion there, and look at the call for
    one inside PyTorch (a line each, for the kinds of findings there are).
    """

    def __init__(self, which: str, findings: list[FrozenValue]) -> None:
        self.findings = findings
        listed = "\n  ".join(finding.describe() for finding in findings[:MAX_LISTED])
        more = f"\n  and {len(findings) - MAX_LISTED} more" if len(findings) > MAX_LISTED else ""
        remedies = [_REMEDY] if any(not finding.inside for finding in findings) else []
        remedies += [_TORCH_REMEDY] if any(finding.inside for finding in findings) else []
        super().__init__(
            f"the {which} graph would freeze values that depend on its inputs: tracing runs the model once on an "
            "example, so a tensor turned into a Python value (an `if` on it, a loop count from .item(), a float) "
            "becomes a constant of the graph, which then takes the example's branch on every frame:\n  "
            f"{listed}{more}\n" + "\n".join(remedies)
        )


class UnsupportedOperatorError(ExportError):
    """An operator the ONNX exporter cannot convert; :attr:`operator` names it (``aten::fft_rfft``)."""

    def __init__(self, message: str, operator: str) -> None:
        self.operator = operator
        super().__init__(message)


def describe_component(model: VideoSlotModel, role: str | None) -> str:
    """``the transition 'jumpy' (my_plugin.Jumpy, registered by plugin 'my_plugin')``; the model's own code for
    ``role`` ``None``."""
    if role is None:
        return f"the model's own code ({type(model).__module__}.{type(model).__qualname__})"
    return component_name(model, role)


def component_descriptions(model: VideoSlotModel) -> dict[str, str]:
    """:func:`describe_component` of each of ``model``'s components, by role (for
    :func:`training.export.operators.check_operators`)."""
    return {role: describe_component(model, role) for role in COMPONENT_NAMES}


@contextlib.contextmanager
def recording_frozen_values(model: VideoSlotModel) -> Iterator[list[FrozenValue]]:
    """Record the tracer warnings raised inside the block, outside :data:`ALLOWED_CONVERSIONS`, once per place.

    Other warnings pass through to the warning machinery as before. The list is filled while the block runs.

    Args:
        model: the model being traced (its components are named in the findings).

    Yields:
        The findings, in the order they were first raised.
    """
    found: list[FrozenValue] = []
    components = {id(getattr(model, role)): role for role in COMPONENT_NAMES}
    with warnings.catch_warnings():
        warnings.simplefilter("always", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        passing = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            if not issubclass(category, torch.jit.TracerWarning):  # type: ignore[attr-defined]
                passing(message, category, filename, lineno, file, line)
                return
            finding = _finding(str(message), filename, lineno, model, components)
            if finding is not None and finding not in found:
                found.append(finding)

        warnings.showwarning = show
        yield found


def _finding(
    message: str, filename: str, lineno: int, model: VideoSlotModel, components: dict[int, str]
) -> FrozenValue | None:
    """The finding of one tracer warning, or ``None`` when it comes from an allowed place."""
    conversion = message.split(". ")[0].removesuffix(" might cause the trace to be incorrect").rstrip(".")
    frame = _frame_at(filename, lineno)
    if frame is None:  # not on the stack (a warning raised with another stack level): report it as it is
        return FrozenValue(conversion, f"{filename}:{lineno}", _source(filename, lineno), "", "the model")
    module, function = frame.f_globals.get("__name__", ""), frame.f_code.co_qualname
    if any(entry.module == module and entry.function == function for entry in ALLOWED_CONVERSIONS):
        return None
    site: FrameType | None = frame
    while site is not None and site.f_code.co_filename.startswith(_TORCH_DIR):
        site = site.f_back
    site = site or frame
    inside = f"{module}.{function}" if site is not frame else ""
    where = site.f_code.co_filename, site.f_lineno
    role = _component_role(frame, components)
    return FrozenValue(conversion, f"{where[0]}:{where[1]}", _source(*where), inside, describe_component(model, role))


def _frame_at(filename: str, lineno: int) -> FrameType | None:
    """The innermost frame on the current stack executing ``filename:lineno`` (the warning's origin)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == filename and frame.f_lineno == lineno:
            return frame
        frame = frame.f_back
    return None


def _component_role(frame: FrameType, components: dict[int, str]) -> str | None:
    """The role of the innermost model component whose method is on the stack from ``frame`` outwards."""
    current: FrameType | None = frame
    while current is not None:
        code = current.f_code
        if code.co_argcount and code.co_varnames[0] == "self":
            role = components.get(id(current.f_locals.get("self")))
            if role is not None:
                return role
        current = current.f_back
    return None


def _source(filename: str, lineno: int) -> str:
    return linecache.getline(filename, lineno).strip()


def unsupported_operator(
    error: Exception,
    module: nn.Module,
    examples: tuple[torch.Tensor, ...],
    model: VideoSlotModel,
    which: str,
    opset: int,
    opsets: range,
) -> UnsupportedOperatorError:
    """The export error for ``torch.onnx.errors.UnsupportedOperatorError``: the operator, the component that
    called it and the line, found by tracing ``module`` again (when that fails, the message goes without them).

    Args:
        error: the exporter's error (``Exporting the operator 'aten::fft_rfft' to ONNX opset version 17 ...``,
            or a conversion's refusal of one use of an operator: ``Unsupported: ONNX export of operator LSTM,
            LSTMs with projections...``).
        module: the graph's module (``FirstStepGraph`` or ``StepGraph``).
        examples: its example inputs.
        model: the model inside ``module``.
        which: the graph's name.
        opset: the opset of the failed export.
        opsets: the opsets the exporter accepts.

    Returns:
        The error to raise.
    """
    text = str(error)
    refused = re.match(r"Unsupported: ONNX export of operator (\w+)(?:, ([^.\[]+))?", text)  # a symbolic's refusal
    named = re.search(r"operator '([^']+)'", text) or re.search(r"namespace (\S+?)\.?$", text)
    if refused:
        operator = f"aten::{refused.group(1).lower()}"
        detail = f" ({refused.group(2).strip()})" if refused.group(2) else ""
    else:
        operator = named.group(1) if named else "an operator"
        detail = "" if named else f" (the exporter says: {text.splitlines()[0][:300]})"
    later = re.search(r"added in version (\d+)", text)
    if later and int(later.group(1)) in opsets:
        fix = f"export with --opset {later.group(1)}, which has it, or replace it"
    else:
        fix = "replace it with operations ONNX has"
    where = _locate_operator(module, examples, operator) if named or refused else None
    if where is None:
        who = f"the model calls {operator}"
    else:
        role, location = where
        who = f"{describe_component(model, role)} calls {operator}" + (f" at {location}" if location else "")
    return UnsupportedOperatorError(
        f"the {which} graph cannot be exported: {who}{detail}, which the ONNX exporter cannot convert at opset "
        f"{opset}; "
        f"{fix} (or serve the model with --backend torch, which needs no export)",
        operator,
    )


def _locate_operator(
    module: nn.Module, examples: tuple[torch.Tensor, ...], operator: str
) -> tuple[str | None, str] | None:
    """``(role, "file:line")`` of the first ``operator`` node in a ``torch.jit.trace`` of ``module``; ``None``
    when the trace fails or has no such node."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's and torch.jit.trace's own deprecation warnings
            traced = torch.jit.trace(module, examples, check_trace=False, strict=False)  # type: ignore[no-untyped-call]
        nodes = [node for node in traced.inlined_graph.nodes() if node.kind() == operator]
    except Exception:  # locating is a courtesy: the unsupported operator is reported regardless
        return None
    if not nodes:
        return None
    scope = nodes[0].scopeName().split("/")[-1]  # "__module.model.transition[.inner...]"
    parts = scope.split(".")
    role = parts[2] if len(parts) > 2 and parts[1] == "model" and parts[2] in COMPONENT_NAMES else None
    return role, caller_outside_torch(nodes[0].sourceRange())


def caller_outside_torch(stack: str) -> str:
    """``file:line`` of the innermost frame outside PyTorch in a traced node's call stack (``file(line): name``
    per line, innermost first); '' when there is none."""
    for line in stack.splitlines():
        match = re.match(r"(.+)\((\d+)\): ", line)
        if match and not match.group(1).startswith(_TORCH_DIR):
            return f"{match.group(1)}:{match.group(2)}"
    return ""
