"""A whole Slot Attention iteration with its MLP against the formulas written out, and gradient through SAVi's
transition.

The other reference tests build Slot Attention without its MLP; here one iteration with the MLP is recomputed
from the module's own parameters with the published update (Locatello et al. 2020: GRU on the attention-weighted
values, then a residual MLP on the LayerNorm of the slots).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from plugins.builtin.aggregators.slot_attention import SlotAttention
from plugins.builtin.transitions.transformer import TransformerTransition


def gru_cell(x: torch.Tensor, h: torch.Tensor, cell: torch.nn.GRUCell) -> torch.Tensor:
    """The GRU update written out (PyTorch's gate order: reset, update, new)."""
    w_ir, w_iz, w_in = cell.weight_ih.chunk(3)
    w_hr, w_hz, w_hn = cell.weight_hh.chunk(3)
    b_ir, b_iz, b_in = cell.bias_ih.chunk(3)
    b_hr, b_hz, b_hn = cell.bias_hh.chunk(3)
    reset = torch.sigmoid(x @ w_ir.T + b_ir + h @ w_hr.T + b_hr)
    update = torch.sigmoid(x @ w_iz.T + b_iz + h @ w_hz.T + b_hz)
    new = torch.tanh(x @ w_in.T + b_in + reset * (h @ w_hn.T + b_hn))
    return (1 - update) * new + update * h


def test_one_slot_attention_iteration_with_its_mlp_matches_the_written_out_update() -> None:
    torch.manual_seed(0)
    slot_dim, feature_dim, num_slots, tokens = 8, 6, 3, 10
    module = SlotAttention(feature_dim, slot_dim, mlp_multiplier=2, epsilon=1e-8).eval()
    for parameter in module.parameters():  # no zero biases or unit norms: every term must show
        torch.nn.init.normal_(parameter, std=0.5)
    features, queries = torch.randn(2, tokens, feature_dim), torch.randn(2, num_slots, slot_dim)
    with torch.no_grad():
        got = module(features, queries, num_iterations=1).slots
        norm_f, norm_s = module.norm_features, module.norm_slots
        normed = F.layer_norm(features, (feature_dim,), norm_f.weight, norm_f.bias)
        keys, values = normed @ module.to_k.weight.T, normed @ module.to_v.weight.T  # [B, P, D]
        q = F.layer_norm(queries, (slot_dim,), norm_s.weight, norm_s.bias) @ module.to_q.weight.T  # [B, K, D]
        attention = torch.softmax(q @ keys.transpose(1, 2) / math.sqrt(slot_dim), dim=1)  # over slots
        weights = attention / (attention.sum(dim=-1, keepdim=True) + 1e-8)  # mean over tokens
        updates = weights @ values  # [B, K, D]
        slots = gru_cell(updates.reshape(-1, slot_dim), queries.reshape(-1, slot_dim), module.gru)
        slots = slots.reshape(2, num_slots, slot_dim)
        norm_m, first, _, second = module.mlp  # type: ignore[misc]
        hidden = F.gelu(F.layer_norm(slots, (slot_dim,), norm_m.weight, norm_m.bias) @ first.weight.T + first.bias)
        expected = slots + hidden @ second.weight.T + second.bias  # residual MLP
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_savi_transition_passes_gradient_back_to_the_previous_slots() -> None:
    """Training through time: the predicted queries depend on the previous frame's slots, and so must their
    gradient (a detached input would train the transition on constants)."""
    torch.manual_seed(0)
    transition = TransformerTransition(slot_dim=8, num_heads=2)
    previous = torch.randn(2, 3, 8, requires_grad=True)
    transition((previous,), (torch.randn(2, 5, 8),)).square().sum().backward()
    assert previous.grad is not None and previous.grad.abs().sum() > 0
