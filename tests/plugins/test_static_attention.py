"""The fixed-shape inference forms of PyTorch's attention blocks compute what the modules do."""

from __future__ import annotations

import torch
from torch import nn

from plugins.builtin.static_attention import decoder_layer, multihead_attention
from plugins.builtin.transitions.randsfq import RandSFQTransition


def test_multihead_attention_matches_the_module() -> None:
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(32, 4, bias=False, batch_first=True).eval()
    query, key_value = torch.randn(3, 5, 32), torch.randn(3, 11, 32)
    with torch.no_grad():
        expected = attention(query, key_value, key_value, need_weights=False)[0]
        torch.testing.assert_close(multihead_attention(attention, query, key_value), expected)


def test_decoder_layer_matches_the_module_and_the_transition_uses_it_only_in_eval() -> None:
    torch.manual_seed(0)
    transition = RandSFQTransition(slot_dim=32, feature_dim=16, num_heads=4).eval()
    target, memory = torch.randn(2, 6, 32), torch.randn(2, 9, 32)
    with torch.no_grad():
        torch.testing.assert_close(decoder_layer(transition.block, target, memory), transition.block(target, memory))
        slots, features = torch.randn(2, 6, 32), torch.randn(2, 9, 16)
        expected = transition.block(
            slots + transition.time_embedding[1], transition.project_features(features) + transition.time_embedding[0]
        )
        torch.testing.assert_close(transition((slots,), (features,)), expected)
