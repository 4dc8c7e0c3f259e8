"""Components against values computed by hand or by a separate reference, beyond the shape contracts.

The conformance suite checks shapes, finiteness and gradients; these tests pin the arithmetic that those
checks cannot see: which axis Slot Attention's softmax runs over, its scale, where its epsilon goes, what the
bi-level truncation passes back, which time gaps RandSF.Q's training pairs carry, SlotContrast's batch-wide
cross-entropy and its direction, the reference initialisations, ar_random's visible-token mixture, and the
errors that name a misconfigured component.
"""

from __future__ import annotations

import math

import pytest
import torch
from tiny_configs import model_config

from plugins import ComponentRegistry, SlotState, VideoOutput, VideoSlotModel
from plugins.builtin.aggregators.slot_attention import SlotAttention
from plugins.builtin.decoders.ar_random import RandomOrderTransformerDecoder
from plugins.builtin.initializers.gaussian import GaussianPerSlot
from plugins.builtin.transitions.randsfq import RandSFQTransition


def identity_slot_attention(epsilon: float, placement: str = "denominator") -> SlotAttention:
    """2-d Slot Attention whose key, value and query projections are the identity, without the MLP."""
    attention = SlotAttention(2, 2, mlp_multiplier=0, epsilon=epsilon, epsilon_placement=placement)  # type: ignore[arg-type]
    with torch.no_grad():
        for projection in (attention.to_k, attention.to_v, attention.to_q):
            projection.weight.copy_(torch.eye(2))
    return attention


def test_slot_attention_softmax_runs_over_slots_with_scale_one_over_sqrt_d() -> None:
    # LayerNorm maps [2, 0] to [1, -1] and [0, 2] to [-1, 1] (up to its epsilon), for tokens and slots alike,
    # so q.k / sqrt(2) is +sqrt(2) for a matching slot and token and -sqrt(2) otherwise.
    attention = identity_slot_attention(epsilon=1e-8)
    features = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]])  # [B=1, P=3, 2]
    queries = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # [B=1, K=2, 2]

    out = attention(features, queries, num_iterations=1)

    match = 1 / (1 + math.exp(-2 * math.sqrt(2)))  # softmax over the two slots of +-sqrt(2)
    expected = torch.tensor([[match, 1 - match, match], [1 - match, match, 1 - match]])  # [K, P]
    torch.testing.assert_close(out.attention[0, 0], expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.attention[0, 0].sum(0), torch.ones(3))  # each token is shared out


@pytest.mark.parametrize("placement", ["denominator", "additive"])
def test_slot_attention_epsilon_placement_matches_its_formula(placement: str) -> None:
    epsilon = 0.5  # large enough that the two placements differ clearly
    attention = identity_slot_attention(epsilon, placement)
    features = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]])
    queries = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])

    out = attention(features, queries, num_iterations=1)

    a = out.attention[0, 0]  # [K, P]
    if placement == "denominator":
        weights = a / (a.sum(-1, keepdim=True) + epsilon)
    else:
        weights = (a + epsilon) / (a + epsilon).sum(-1, keepdim=True)
    values = torch.nn.functional.layer_norm(features[0], (2,))  # identity value projection
    updates = weights @ values  # [K, 2]
    with torch.no_grad():
        expected = attention.gru(updates, queries[0])
    torch.testing.assert_close(out.slots[0], expected)


def test_bi_level_truncation_passes_back_the_last_iterations_gradient_to_the_queries() -> None:
    torch.manual_seed(0)
    truncated = SlotAttention(4, 4, truncation="bi_level")
    features = torch.randn(1, 5, 4)
    queries = torch.randn(1, 3, 4, requires_grad=True)
    out = truncated(features, queries, num_iterations=3)
    out.slots.square().sum().backward()

    # Reference: run two iterations without gradient, then one from a leaf holding their result.
    with torch.no_grad():
        settled = truncated(features, queries, num_iterations=2).slots
    leaf = settled.clone().requires_grad_(True)
    plain = SlotAttention(4, 4)
    plain.load_state_dict(truncated.state_dict())
    reference = plain(features, leaf, num_iterations=1)
    reference.slots.square().sum().backward()

    torch.testing.assert_close(out.slots, reference.slots)
    assert queries.grad is not None and leaf.grad is not None
    torch.testing.assert_close(queries.grad, leaf.grad)


def test_small_cnn_rejects_an_even_kernel(registry: ComponentRegistry) -> None:
    config = model_config(encoder={"name": "small_cnn", "kwargs": {"channels": [8], "strides": [1], "kernel_size": 4}})
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        VideoSlotModel(**config, registry=registry)


def test_time_similarity_without_decoder_extras_says_what_to_set(registry: ComponentRegistry) -> None:
    torch.manual_seed(0)
    model = VideoSlotModel(**model_config(decoder={"name": "mlp", "kwargs": {"hidden_dims": [16]}}), registry=registry)
    loss = registry.build("losses", "time_similarity", {})
    output = model(torch.rand(1, 2, 3, *model.image_size))
    with pytest.raises(ValueError, match=r"extra_dim=.*got none"):
        loss(output, 0.5)


def test_randsfq_training_pairs_use_the_same_time_gaps_as_inference() -> None:
    """In training each sample reads slot set ``j`` (``n - j`` frames back) and feature map ``i`` (``n - 1 - i``
    back); the newest pair must be exactly what inference computes from the previous slots and current features.
    """
    torch.manual_seed(0)
    transition = RandSFQTransition(slot_dim=8, feature_dim=6, window=4, num_heads=2, dropout=0.0)
    n, batch = 3, 64
    past_slots = tuple(torch.randn(batch, 2, 8) for _ in range(n))  # oldest first
    past_features = tuple(torch.randn(batch, 5, 6) for _ in range(n))

    with torch.no_grad():
        trained = transition.train()(past_slots, past_features)  # [B, K, D], one random pair per sample
        inference = transition.eval()((past_slots[-1],), (past_features[-1],))  # previous slots, current features
        embedding = transition.time_embedding
        references = {}
        for j in range(n):
            for i in range(n):
                target = past_slots[j] + embedding[n - j]  # [B, K, D]
                memory = transition.project_features(past_features[i]) + embedding[n - 1 - i]  # [B, P, D]
                references[(j, i)] = transition.block(target, memory)
    torch.testing.assert_close(references[(n - 1, n - 1)], inference)

    used = set()
    for sample in range(batch):
        matches = [pair for pair, ref in references.items() if torch.allclose(trained[sample], ref[sample], atol=1e-5)]
        assert len(matches) == 1, f"sample {sample} matches no (slot set, feature map) pair with the expected gaps"
        used |= set(matches)
    assert len(used) == n * n, "every pair of the window is drawn"


def _slots_only_output(slots: torch.Tensor) -> VideoOutput:
    """A ``VideoOutput`` carrying only slots ``[B, T, K, D]``, for losses that read nothing else."""
    batch, frames = slots.shape[:2]
    empty = torch.zeros(batch, frames, 0, 0)
    return VideoOutput(slots=slots, masks=empty, reconstruction=empty, target=empty, steps=[], state=SlotState(slots))


@pytest.mark.parametrize(
    ("videos", "swap", "expected"),
    [
        (1, False, math.log(1 + math.exp(-10))),  # each slot finds itself: cosine 1 / 0.1 against 0 / 0.1
        (1, True, math.log(1 + math.exp(10))),  # the two slots trade places between the frames
        (2, False, math.log(2 + 2 * math.exp(-10))),  # the other video's same slot competes: the whole batch
    ],
)
def test_slot_contrast_matches_hand_computed_values(
    registry: ComponentRegistry, videos: int, swap: bool, expected: float
) -> None:
    first = torch.eye(2)  # [K=2, D=2]: orthogonal unit slots
    following = first.flip(0) if swap else first
    slots = torch.stack([first, following])[None].expand(videos, -1, -1, -1)  # [B, T=2, K, D]
    loss = registry.build("losses", "slot_contrast", {"temperature": 0.1})
    assert loss(_slots_only_output(slots), 0.5).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_slot_contrast_softmax_runs_over_the_earlier_frames_slots(registry: ComponentRegistry) -> None:
    """Both slots of frame t+1 equal slot 0 of frame t. Over the frame-t slots (the reference's class axis), the
    first picks its predecessor (cosine 1 against 0) and the second picks the wrong one; over the frame-t+1
    slots every row would see two equal candidates and cost log 2 whatever the direction.
    """
    first = torch.eye(2)  # [K=2, D=2]
    following = first[[0, 0]]  # [K, D]: both slots copy slot 0
    slots = torch.stack([first, following])[None]  # [B=1, T=2, K, D]
    loss = registry.build("losses", "slot_contrast", {"temperature": 0.1})
    expected = (math.log(1 + math.exp(-10)) + math.log(1 + math.exp(10))) / 2
    assert loss(_slots_only_output(slots), 0.5).item() == pytest.approx(expected, rel=1e-5)


def test_gaussian_per_slot_mean_takes_the_fans_of_its_slot_by_width_matrix() -> None:
    """Xavier-uniform over the ``[K, D]`` matrix (bound sqrt(6 / (K + D))), not over the ``[1, K, D]`` tensor."""
    torch.manual_seed(0)
    num_slots, slot_dim = 7, 256
    initializer = GaussianPerSlot(num_slots, slot_dim)
    bound = math.sqrt(6 / (num_slots + slot_dim))  # 0.151; the 3-d fans would give 0.054
    values = initializer.mean.detach().abs()
    assert float(values.max()) <= bound
    assert float(values.max()) > 0.95 * bound


def test_randsfq_starts_as_the_reference_transition() -> None:
    """A unit-variance time embedding (``nn.Embedding``'s initialisation) and a zero feature-projection bias."""
    torch.manual_seed(0)
    transition = RandSFQTransition(slot_dim=256, feature_dim=64, window=6)
    assert float(transition.time_embedding.std()) == pytest.approx(1.0, abs=0.05)
    assert bool((transition.project_features.bias == 0).all())


@pytest.mark.parametrize(("width", "read_out"), [(None, False), (12, True)])
def test_ar_random_reads_out_only_when_its_width_differs_from_the_target(width: int | None, read_out: bool) -> None:
    """The published video configs end at the last layer (width == target width); no extra trained layer."""
    decoder = RandomOrderTransformerDecoder(slot_dim=8, target_dim=16, feature_grid=(4, 4), dim=width, depth=1)
    assert isinstance(decoder.readout, torch.nn.Linear) == read_out
    assert not any(name.startswith("readout") for name, _ in decoder.named_parameters()) or read_out


def test_ar_random_visible_counts_follow_the_published_mixture() -> None:
    """Genera1Z/DIAS ``ARRandTransformerDecoder``: ``k ~ U{0..254}`` with probability 0.5, else 24 (256 tokens)."""
    torch.manual_seed(0)
    decoder = RandomOrderTransformerDecoder(slot_dim=8, target_dim=8, feature_grid=(16, 16), depth=1)
    visible = decoder.train().visible_tokens(20_000, torch.device("cpu"))  # [B, 256]
    counts = visible.sum(1)
    assert int(counts.min()) == 0 and int(counts.max()) == 254
    fixed_share = float((counts == 24).float().mean())
    assert fixed_share == pytest.approx(0.5 + 0.5 / 255, abs=0.015)
    uniform = counts[counts != 24].float()
    assert float(uniform.mean()) == pytest.approx(127.0, abs=2.0)  # the mean of U{0..254}
    per_position = visible.float().mean(0)  # no position is favoured by the random order
    assert float(per_position.max() - per_position.min()) < 0.05
    assert bool(decoder.eval().visible_tokens(3, torch.device("cpu")).all())
