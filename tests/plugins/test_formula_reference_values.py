"""Loss, decoder, initializer and aggregator formulas against hand-computed or independently recomputed values.

Shape and gradient checks elsewhere let these formulas drift unnoticed: VideoSAUR's time-similarity target
(frame ``t`` against ``t + 1``, divided by its temperature), DIAS's attention distillation (its cosine weight
ramp and the detached last iteration as target), which tokens ``ar_random`` hides behind its mask token, the
shared Gaussian's ``exp(log_sigma)``, the SmoothSA preheater's un-normalised cross-attention input, and Slot
Attention's ``slot_mask``.
"""

from __future__ import annotations

import math

import pytest
import torch

from plugins import ComponentRegistry, SlotState, VideoOutput
from plugins.builtin.aggregators.slot_attention import SlotAttention
from plugins.builtin.decoders.ar_random import RandomOrderTransformerDecoder
from plugins.builtin.initializers.gaussian import GaussianShared
from plugins.builtin.initializers.preheat import SmoothSAPreheat
from plugins.types import StepOutput


def _output(
    target: torch.Tensor, extras: list[torch.Tensor] | None = None, attentions: list[torch.Tensor] | None = None
) -> VideoOutput:
    """A ``VideoOutput`` with ``target [B, T, P, C]`` and per-frame extras ``[B, P, P]`` or attention ``[B, R, K, P]``.

    Everything else is an empty placeholder: the losses tested here read nothing else.
    """
    batch, frames, tokens, _ = target.shape
    empty = torch.zeros(batch, 0)
    steps = []
    for t in range(frames):
        attention = attentions[t] if attentions is not None else torch.zeros(batch, 1, 1, tokens)
        extra = extras[t] if extras is not None else None
        frame = target[:, t]
        steps.append(StepOutput(empty, empty, attention, frame, frame, frame, (1, tokens), extra=extra))
    slots = torch.zeros(batch, frames, 1, 1)
    return VideoOutput(
        slots=slots, masks=empty, reconstruction=target, target=target, steps=steps, state=SlotState(slots[:, -1])
    )


# --- time_similarity (VideoSAUR, martius-lab/videosaur) ----------------------------------------------------------


def test_time_similarity_matches_a_hand_computed_value(registry: ComponentRegistry) -> None:
    """Two frames of two 2-d tokens with the default temperature 0.075: the target pairs frame 0 with frame 1."""
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]])[None]  # [B=1, T=2, P=2, C=2]
    extras = [  # [B=1, P=2, P=2] logits over the next frame's tokens
        torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0]]]),  # frame 0: probabilities [1/4, 3/4] and [1/2, 1/2]
        torch.tensor([[[5.0, -5.0], [-5.0, 5.0]]]),  # frame 1 has no next frame: ignored
    ]
    loss = registry.build("losses", "time_similarity", {})
    tau = 0.075
    # Token 0 of frame 0 has cosines [1, 1/sqrt(2)] with frame 1's tokens; token 1 has [0, 1/sqrt(2)] (0 is not
    # below the threshold 0, so it stays), but its prediction is uniform, so its cross-entropy is log 2 anyway.
    p00 = 1 / (1 + math.exp((1 / math.sqrt(2) - 1) / tau))
    token0 = -(p00 * math.log(1 / 4) + (1 - p00) * math.log(3 / 4))
    expected = (token0 + math.log(2)) / 2
    assert loss(_output(target, extras), 0.5).item() == pytest.approx(expected, rel=1e-5)


def _time_similarity_reference(
    target: torch.Tensor, extras: list[torch.Tensor], tau: float, threshold: float
) -> float:
    """VideoSAUR's loss, written token by token: softmax over frame ``t + 1`` of thresholded cosines / tau."""
    batch, frames, tokens, _ = target.shape
    terms = []
    unit = target / target.norm(dim=-1, keepdim=True)
    for b in range(batch):
        for t in range(frames - 1):
            for i in range(tokens):
                cosines = unit[b, t + 1] @ unit[b, t, i]  # [P]: token i of frame t against every token of t + 1
                kept = cosines >= threshold
                weights = torch.where(kept, torch.exp(cosines / tau), torch.zeros_like(cosines))
                if not bool(kept.any()):
                    weights = torch.ones_like(cosines)  # no similarity above the threshold: uniform target
                probabilities = weights / weights.sum()
                logits = extras[t][b, i]
                log_predicted = logits - torch.log(torch.exp(logits).sum())
                terms.append(-(probabilities * log_predicted).sum())
    return float(torch.stack(terms).mean())


@pytest.mark.parametrize(
    ("kwargs", "tau", "threshold"), [({}, 0.075, 0.0), ({"temperature": 0.5, "threshold": -0.2}, 0.5, -0.2)]
)
def test_time_similarity_matches_a_token_by_token_reference(
    registry: ComponentRegistry, kwargs: dict[str, float], tau: float, threshold: float
) -> None:
    """Random features and predictions over three frames, against the formula written out per token."""
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(2, 3, 5, 4, generator=generator)  # [B, T, P, C]
    extras = [torch.randn(2, 5, 5, generator=generator) for _ in range(3)]  # [B, P, P] per frame
    loss = registry.build("losses", "time_similarity", kwargs)
    expected = _time_similarity_reference(target, extras, tau, threshold)
    assert loss(_output(target, extras), 0.5).item() == pytest.approx(expected, rel=1e-5)


# --- attention_distillation (DIAS, Genera1Z/DIAS) ----------------------------------------------------------------


def _attentions(generator: torch.Generator, iterations: tuple[int, ...]) -> list[torch.Tensor]:
    """Leaf attention maps ``[B=2, R, K=3, P=4]`` per frame, softmax over slots, all iterations different."""
    return [torch.randn(2, r, 3, 4, generator=generator).softmax(2).requires_grad_(True) for r in iterations]


def _distillation_reference(attentions: list[torch.Tensor], faithful: bool) -> torch.Tensor:
    """Mean over frames with R >= 2 of CE(first iteration, sg(last iteration)), slots as classes."""
    terms = []
    for attention in attentions:
        if attention.shape[1] < 2:
            continue
        first, last = attention[:, 0], attention[:, attention.shape[1] - 1].detach()  # [B, K, P]
        # faithful: PyTorch's soft-target cross-entropy on the probabilities, one more log-softmax over slots
        log_input = first - torch.log(torch.exp(first).sum(1, keepdim=True)) if faithful else torch.log(first)
        terms.append(-(last * log_input).sum(1).mean())
    return torch.stack(terms).mean()


@pytest.mark.parametrize("faithful", [True, False])
@pytest.mark.parametrize("progress", [0.0, 0.25, 0.5, 0.9, 1.0, 1.5])
def test_attention_distillation_is_the_cosine_ramp_times_ce_to_the_last_iteration(
    registry: ComponentRegistry, progress: float, faithful: bool
) -> None:
    """Weight ``(1 - cos(pi * n / N)) / 2`` (clamped to [0, 1]) times CE to the last of three iterations."""
    attentions = _attentions(torch.Generator().manual_seed(0), (3, 1, 3))  # the 1-iteration frame is skipped
    target = torch.zeros(2, 3, 4, 1)
    loss = registry.build("losses", "attention_distillation", {"faithful": faithful})
    ramp = 0.5 * (1 - math.cos(math.pi * min(progress, 1.0)))
    expected = ramp * _distillation_reference(attentions, faithful).item()
    assert loss(_output(target, attentions=attentions), progress).item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_attention_distillation_paper_target_is_the_hungarian_matched_binarised_last_iteration(
    registry: ComponentRegistry,
) -> None:
    """Eq. 14-15 of the DIAS paper, by hand: first iteration argmax slots [0, 0, 1, 2], last [2, 2, 0, 1] (the
    same partition, slots relabelled: 2 -> 0, 0 -> 1, 1 -> 2), so the matched target is [0, 0, 1, 2] and the loss
    is the mean of -log first[target] over pixels; the index-matched code target gives another value."""
    first = torch.tensor([[[0.7, 0.6, 0.2, 0.1], [0.2, 0.3, 0.5, 0.3], [0.1, 0.1, 0.3, 0.6]]])  # [B=1, K=3, P=4]
    last = torch.tensor([[[0.1, 0.2, 0.8, 0.1], [0.1, 0.1, 0.1, 0.7], [0.8, 0.7, 0.1, 0.2]]])
    attention = torch.stack([first, last], dim=1).requires_grad_(True)  # [1, R=2, 3, 4]
    expected = -(math.log(0.7) + math.log(0.6) + math.log(0.5) + math.log(0.6)) / 4
    paper = registry.build("losses", "attention_distillation", {"target": "paper"})
    assert paper(_output(torch.zeros(1, 1, 4, 1), attentions=[attention]), 1.0).item() == pytest.approx(expected)
    relabelled = torch.stack([first, last[:, [1, 2, 0]]], dim=1)  # the last iteration's slots in another order
    assert paper(_output(torch.zeros(1, 1, 4, 1), attentions=[relabelled]), 1.0).item() == pytest.approx(expected)
    code = registry.build("losses", "attention_distillation", {"faithful": False})
    assert code(_output(torch.zeros(1, 1, 4, 1), attentions=[attention]), 1.0).item() != pytest.approx(expected)
    paper(_output(torch.zeros(1, 1, 4, 1), attentions=[attention]), 1.0).backward()
    assert attention.grad is not None and bool((attention.grad[:, 1] == 0).all()), "the target takes no gradient"
    with pytest.raises(ValueError, match="target must be one of"):
        registry.build("losses", "attention_distillation", {"target": "papers"})


@pytest.mark.parametrize("faithful", [True, False])
def test_attention_distillation_trains_only_the_first_iteration(registry: ComponentRegistry, faithful: bool) -> None:
    """The last iteration is a stop-gradient target: gradient reaches the first iteration's attention only."""
    attentions = _attentions(torch.Generator().manual_seed(1), (3, 3))
    loss = registry.build("losses", "attention_distillation", {"faithful": faithful})
    loss(_output(torch.zeros(2, 2, 4, 1), attentions=attentions), 1.0).backward()

    references = [a.detach().clone().requires_grad_(True) for a in attentions]
    _distillation_reference(references, faithful).backward()
    for attention, reference in zip(attentions, references, strict=True):
        assert attention.grad is not None and reference.grad is not None
        assert bool((attention.grad[:, 1:] == 0).all()), "no gradient into later iterations"
        assert float(attention.grad[:, 0].abs().max()) > 0
        torch.testing.assert_close(attention.grad, reference.grad)


# --- ar_random (Genera1Z/DIAS ARRandTransformerDecoder) ----------------------------------------------------------


def _ar_random_reference(
    decoder: RandomOrderTransformerDecoder, slots: torch.Tensor, target: torch.Tensor, visible: torch.Tensor
) -> torch.Tensor:
    """The decoder's forward from its parts: visible tokens keep their embedding, hidden ones get the mask token."""
    tokens = decoder.embed_target(target)  # [B, P, width]
    mixed = tokens.clone()
    for b, p in (~visible).nonzero().tolist():
        mixed[b, p] = decoder.mask_token[0, 0]
    x = decoder.input_norm(mixed + decoder.position)
    memory = decoder.embed_slots(slots)
    for layer in decoder.layers:
        x, _ = layer(x, memory, want_attention=False)
    return decoder.readout(x)


def test_ar_random_hides_exactly_the_tokens_not_drawn_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a fixed visible set, the output matches the reference and ignores the hidden tokens' values."""
    torch.manual_seed(0)
    decoder = RandomOrderTransformerDecoder(slot_dim=8, target_dim=8, feature_grid=(2, 3), depth=2, num_heads=2)
    decoder.train()
    visible = torch.tensor([[True, False, False, True, False, True], [False, True, True, True, False, False]])
    monkeypatch.setattr(decoder, "visible_tokens", lambda batch, device: visible)
    slots, target = torch.randn(2, 3, 8), torch.randn(2, 6, 8)

    with torch.no_grad():
        out = decoder(slots, target).reconstruction
        torch.testing.assert_close(out, _ar_random_reference(decoder, slots, target, visible))
        hidden_changed = torch.where(visible[..., None], target, torch.randn(2, 6, 8))
        torch.testing.assert_close(decoder(slots, hidden_changed).reconstruction, out)  # hidden values are unread
        visible_changed = torch.where(visible[..., None], torch.randn(2, 6, 8), target)
        assert not torch.allclose(decoder(slots, visible_changed).reconstruction, out, atol=1e-4)

        decoder.eval()  # every token is visible at inference
        all_visible = torch.ones(2, 6, dtype=torch.bool)
        monkeypatch.undo()
        torch.testing.assert_close(
            decoder(slots, target).reconstruction, _ar_random_reference(decoder, slots, target, all_visible)
        )


@pytest.mark.parametrize(
    ("grid", "fixed_visible", "expected"), [((16, 16), None, 24), ((8, 8), None, 5), ((8, 8), 24, 24)]
)
def test_ar_random_leaves_the_fixed_count_visible_in_the_samples_that_do_not_draw_one(
    grid: tuple[int, int], fixed_visible: int | None, expected: int
) -> None:
    """The published code's 24 tokens at 16x16 (``int(0.1 * 256) - 1``), a tenth of the tokens less one on another
    grid, or the count given; about half of the samples draw a count uniformly and the rest use the fixed one."""
    decoder = RandomOrderTransformerDecoder(slot_dim=4, target_dim=8, feature_grid=grid, fixed_visible=fixed_visible)
    torch.manual_seed(0)
    counts = decoder.train().visible_tokens(4000, torch.device("cpu")).sum(dim=1)  # [B]
    share = (counts == expected).float().mean().item()
    assert 0.45 < share < 0.55, (share, counts.mode().values.item())


@pytest.mark.parametrize("fixed_visible", [-1, 64])
def test_ar_random_refuses_a_fixed_count_outside_its_grid(fixed_visible: int) -> None:
    with pytest.raises(ValueError, match=r"^ar_random: fixed_visible must be in \[0, 63\] for a 8x8 token grid, got "):
        RandomOrderTransformerDecoder(slot_dim=4, target_dim=8, feature_grid=(8, 8), fixed_visible=fixed_visible)


# --- initializers -----------------------------------------------------------------------------------------------


def test_gaussian_shared_scales_the_noise_by_exp_log_std() -> None:
    """``q = mu + exp(log_sigma) * eps``: with mu = 0.5 and sigma = 2 every query is 0.5 + 2 * its noise."""
    initializer = GaussianShared(num_slots=3, slot_dim=4)
    noise = torch.arange(12.0).reshape(3, 4) / 6 - 1  # [K, D]
    with torch.no_grad():
        initializer.mean.fill_(0.5)
        initializer.log_std.fill_(math.log(2.0))
        initializer.get_buffer("fixed_noise").copy_(noise)
    features = torch.zeros(2, 5, 7)

    queries = initializer.eval()(features).queries
    torch.testing.assert_close(queries, (0.5 + 2 * noise).expand(2, -1, -1))

    torch.manual_seed(3)
    trained = initializer.train()(features).queries
    torch.manual_seed(3)
    torch.testing.assert_close(trained, 0.5 + 2 * torch.randn(2, 3, 4))


@pytest.mark.parametrize("training", [False, True])
def test_smoothsa_preheat_cross_attends_from_the_raw_gaussian_sample(training: bool) -> None:
    """SmoothSA preheater: ``h = z + CA(z, W_p X)``, no LayerNorm on ``z`` or the memory, then pre-norm SA, FFN."""
    torch.manual_seed(0)
    initializer = SmoothSAPreheat(num_slots=3, slot_dim=8, feature_dim=6, num_heads=2)
    with torch.no_grad():  # move z away from a zero-mean, unit-scale sample, so a LayerNorm on it would show
        initializer.mean.copy_(torch.randn(1, 1, 8) * 2 + 1)
        initializer.log_std.copy_(torch.randn(1, 1, 8) * 0.5)
    initializer.train(training)
    features = torch.randn(2, 5, 6)

    torch.manual_seed(1)
    out = initializer(features)
    torch.manual_seed(1)
    with torch.no_grad():
        shape = (2, 3, 8)
        noise = torch.randn(shape) if training else initializer.get_buffer("fixed_noise").expand(shape)
        z = initializer.mean + initializer.log_std.exp() * noise
        memory = initializer.memory(features)
        h = z + initializer.cross_attention(z, memory, memory, need_weights=False)[0]
        normed = initializer.self_attention_norm(h)
        h = h + initializer.self_attention(normed, normed, normed, need_weights=False)[0]
        expected = h + initializer.ffn(initializer.ffn_norm(h))
        noisy = expected + initializer.query_log_std.exp() * torch.randn(shape) if training else expected
    assert out.preheated is not None
    torch.testing.assert_close(out.preheated, expected)
    torch.testing.assert_close(out.queries, noisy)


# --- Slot Attention slot_mask (Aggregator interface) ------------------------------------------------------------


def test_slot_attention_masked_slots_get_no_update_under_either_epsilon_placement() -> None:
    """With the epsilon added to the attention (SAVi's placement) a masked slot would get weights eps / (P eps),
    the mean of the values; its update must be zero as with the denominator placement."""
    torch.manual_seed(0)
    features, queries = torch.randn(1, 7, 6), torch.randn(1, 3, 8)
    slot_mask = torch.tensor([[True, False, True]])
    updated = {}
    for placement in ("denominator", "additive"):
        attention = SlotAttention(6, 8, epsilon_placement=placement, mlp_multiplier=0)
        captured: list[torch.Tensor] = []
        attention.gru.register_forward_hook(lambda module, inputs, output, into=captured: into.append(inputs[0]))
        with torch.no_grad():
            attention(features, queries, num_iterations=1, slot_mask=slot_mask)
        updated[placement] = captured[0].reshape(1, 3, 8)[0, 1]  # the GRU input (update) of the masked slot
    for placement, update in updated.items():
        assert bool((update == 0).all()), f"{placement}: a masked slot was updated"


def test_slot_attention_masked_slots_get_no_attention_and_leave_the_others_as_if_absent() -> None:
    """Masked slots are out of the softmax over slots: the kept ones evolve exactly as a run without them."""
    torch.manual_seed(0)
    attention = SlotAttention(6, 8)
    features, queries = torch.randn(2, 7, 6), torch.randn(2, 4, 8)
    slot_mask = torch.tensor([[True, False, True, True], [True, True, False, False]])

    with torch.no_grad():
        out = attention(features, queries, num_iterations=3, slot_mask=slot_mask)
        for b in range(2):
            kept = slot_mask[b]
            alone = attention(features[b : b + 1], queries[b : b + 1, kept], num_iterations=3)
            torch.testing.assert_close(out.slots[b, kept], alone.slots[0])
            torch.testing.assert_close(out.attention[b][:, kept], alone.attention[0])
            assert bool((out.attention[b][:, ~kept] == 0).all()), "masked slots get no attention"
        torch.testing.assert_close(out.attention.sum(2), torch.ones(2, 3, 7))  # tokens shared among kept slots
