"""``check_loss`` (:mod:`plugins.testing`): a loss checked on a tiny model's outputs as training uses it."""

from __future__ import annotations

import math
from typing import Any

import torch

from plugins.contracts import require
from plugins.interfaces import ContractViolation
from plugins.registry import ComponentRegistry
from plugins.tiny_model import TINY_MODEL, build_tiny, tiny_video


def check_loss(
    name: str,
    kwargs: dict[str, Any] | None = None,
    registry: ComponentRegistry | None = None,
    config: dict[str, Any] | None = None,
) -> None:
    """Check the loss ``name`` (built with ``kwargs``) on the outputs of a tiny model in training mode: at the start,
    middle and end of training (``progress`` 0, 0.5 and 1) it returns a finite scalar tensor (shape ``()``) on the
    autograd graph (a value made with ``.item()``, under ``torch.no_grad()`` or from detached tensors trains nothing),
    and at one of them at least it gives one of the model's parameters a non-zero gradient.

    Args:
        name: the loss's registry name.
        kwargs: its constructor arguments.
        registry: where the name resolves; default: the installed plugins.
        config: the model whose outputs it scores (default :data:`TINY_MODEL`); a loss that reads outputs only some
            components give (``time_similarity``: a decoder's feature extras) needs a model with them, else its own
            error propagates.

    Raises:
        ContractViolation: a rule is broken (the message names the loss, its class and the rule).
    """
    from plugins.manager import default_registry

    registry = default_registry() if registry is None else registry
    loss = registry.build("losses", name, kwargs or {})
    cls = type(loss)
    plugin = registry.owner("losses", name)
    who = f"the loss {name!r} ({cls.__module__}.{cls.__qualname__}, registered by plugin {plugin!r})"
    trains: list[bool] = []  # whether each progress's value gave a parameter a non-zero gradient
    for progress in (0.0, 0.5, 1.0):
        model = build_tiny(config or TINY_MODEL, registry).train()
        value = loss(model(tiny_video(model)), progress)
        if not (isinstance(value, torch.Tensor) and value.ndim == 0 and value.is_floating_point()):
            returned = (
                f"a {value.dtype} tensor of shape {tuple(value.shape)}"
                if isinstance(value, torch.Tensor)
                else type(value).__name__
            )
            raise ContractViolation(
                f"{who} returned {returned} at progress {progress}; a loss returns a floating-point scalar tensor "
                "(shape ())"
            )
        require(
            math.isfinite(value.item()), f"{who} returned {value.item()} at progress {progress}, not a finite value"
        )
        require(
            value.requires_grad,
            f"{who} returned a value no parameter of the model reaches at progress {progress} (it does not require "
            "grad): compute it with tensor operations on the model's outputs, not .item(), float() or torch.no_grad()",
        )
        value.backward()  # type: ignore[no-untyped-call]
        trains.append(any(p.grad is not None and bool(torch.any(p.grad != 0)) for p in model.parameters()))
    require(  # a term ramped in over training (attention distillation) may train nothing at its start
        any(trains), f"{who} gives no parameter of the model a non-zero gradient, at progress 0, 0.5 or 1"
    )
