"""Gradient-norm clipping, over the whole model or per model component."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from plugins.model import COMPONENT_NAMES


def clip_gradients(model: nn.Module, max_norm: float | None, scope: Literal["global", "component"]) -> torch.Tensor:
    """Clip the gradients of ``model`` in place and return their norm before clipping.

    Args:
        model: the model whose ``.grad`` fields were just filled by ``backward``.
        max_norm: the largest norm allowed (None: measure only).
        scope: ``"global"`` clips all gradients as one vector; ``"component"`` clips the gradients of each
            child named in :data:`plugins.model.COMPONENT_NAMES` as its own vector (parameters outside them
            form one more group).

    Returns:
        The global norm of all gradients before clipping (a 0-d tensor), whatever the scope, so logged
        ``grad_norm`` values compare across scopes.

    Raises:
        ValueError: ``scope`` is neither ``"global"`` nor ``"component"``.
    """
    limit = max_norm if max_norm is not None else float("inf")
    if scope == "global":
        parameters = [p for p in model.parameters() if p.grad is not None]
        return torch.nn.utils.clip_grad_norm_(parameters, limit)
    if scope != "component":
        raise ValueError(f"grad_clip_scope must be 'global' or 'component', got {scope!r}")
    norms = [torch.nn.utils.clip_grad_norm_(group, limit) for group in _component_groups(model) if group]
    if not norms:
        return torch.zeros(())
    total: torch.Tensor = torch.linalg.vector_norm(torch.stack(norms))  # G x [] -> [G], one norm per group
    return total


def _component_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """Parameters with gradients, grouped by component; the rest (if any) as a last group."""
    grouped: set[int] = set()
    groups: list[list[nn.Parameter]] = []
    for name in COMPONENT_NAMES:
        child = getattr(model, name, None)
        if not isinstance(child, nn.Module):
            continue
        members = [p for p in child.parameters() if p.grad is not None]
        grouped.update(id(p) for p in child.parameters())
        groups.append(members)
    groups.append([p for p in model.parameters() if p.grad is not None and id(p) not in grouped])
    return groups
