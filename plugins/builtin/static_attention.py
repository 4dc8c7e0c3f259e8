"""Inference forms of PyTorch's attention blocks whose ONNX graphs have fixed shapes.

``nn.MultiheadAttention`` exports with the batch size read from the input at run time: its reshapes become
chains of ``Shape``, ``Gather``, ``Unsqueeze`` and ``Concat`` nodes (125 of the 317 nodes of the default
model's ``step`` graph came from its RandSF.Q block). The functions here compute the same thing from the same
weights with reshapes whose only free size is the batch (``-1``). The RandSF.Q transition uses them in eval
mode (serving, export, evaluation; training keeps PyTorch's modules): with the broadcast decoder's reshapes,
the default model's ``step`` graph went from 317 to 187 nodes, with the same scores. The SmoothSA preheater
could use them as well (its ``first_step`` graph would go from 418 to 288 nodes), but its attention then rounds
differently enough to move the default model's video mBO by 0.0007, off the figures its model card quotes, for
a gain on the first frame only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def multihead_attention(attention: nn.MultiheadAttention, query: Tensor, key_value: Tensor) -> Tensor:
    """``attention(query, key_value, key_value, need_weights=False)[0]`` for a bias-free, batch-first module.

    Args:
        attention: ``nn.MultiheadAttention`` with ``bias=False`` and ``batch_first=True``, keys and values of its
            own width (one packed input projection).
        query: ``[B, Lq, D]``.
        key_value: ``[B, Lk, D]``.

    Returns:
        ``[B, Lq, D]``.
    """
    heads, width = attention.num_heads, attention.embed_dim
    head_width = width // heads
    query_length, key_length = query.shape[1], key_value.shape[1]
    w_q, w_k, w_v = attention.in_proj_weight.chunk(3)  # each [D, D]
    # split the heads: query [B, Lq, D] -> [B, H, Lq, d], keys and values [B, Lk, D] -> [B, H, Lk, d]
    q = _split_heads(F.linear(query, w_q), query_length, heads, head_width)  # [B, H, Lq, d]
    k = _split_heads(F.linear(key_value, w_k), key_length, heads, head_width)  # [B, H, Lk, d]
    v = _split_heads(F.linear(key_value, w_v), key_length, heads, head_width)  # [B, H, Lk, d]
    # [B, H, Lq, d] @ ([B, H, Lk, d] -> [B, H, d, Lk]) -> [B, H, Lq, Lk]
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_width), dim=-1)  # [B, H, Lq, Lk]
    mixed = (weights @ v).transpose(1, 2).reshape(-1, query_length, width)  # [B, H, Lq, d] -> [B, Lq, D]
    return F.linear(mixed, attention.out_proj.weight)


def _split_heads(x: Tensor, length: int, heads: int, head_width: int) -> Tensor:
    """``[B, L, H*d]`` -> ``[B, H, L, d]``, as a contiguous copy.

    The copy makes the matrix products of :func:`multihead_attention` read one memory layout whatever the batch.
    A transposed view would fold a batch of one into the batched product without a copy, and PyTorch's CPU kernels
    then round self-attention scores otherwise than for a larger batch (about 1e-6), which a recurrent model
    carries into other slot assignments: a stream served alone would drift from the same stream batched with
    others. The copy is free in ONNX, which has no strides.
    """
    # [B, L, H*d] -> [B, L, H, d] -> [B, H, L, d]
    return x.reshape(-1, length, heads, head_width).transpose(1, 2).contiguous()


def decoder_layer(block: nn.TransformerDecoderLayer, target: Tensor, memory: Tensor) -> Tensor:
    """``block(target, memory)`` in eval mode for a post-norm (``norm_first=False``), bias-free, batch-first
    block with GELU: self-attention, cross-attention and feed-forward, each added and normalised.

    Args:
        block: the decoder layer.
        target: ``[B, Lq, D]``.
        memory: ``[B, Lk, D]``.

    Returns:
        ``[B, Lq, D]``.
    """
    x = block.norm1(target + multihead_attention(block.self_attn, target, target))
    x = block.norm2(x + multihead_attention(block.multihead_attn, x, memory))
    out: Tensor = block.norm3(x + block.linear2(F.gelu(block.linear1(x))))
    return out
