"""``broadcast`` decoder: the folded first layer used without gradients equals the tiled one used in training."""

from __future__ import annotations

import pytest
import torch

from plugins.builtin.decoders.broadcast import SpatialBroadcastDecoder


def _outputs(decoder: SpatialBroadcastDecoder, slots: torch.Tensor, *, grad: bool) -> tuple[torch.Tensor, ...]:
    with torch.set_grad_enabled(grad):
        out = decoder(slots, torch.empty(0))
    return out.reconstruction.detach(), out.masks.detach()


@pytest.mark.parametrize(("output_size", "kernel_size"), [((8, 8), 5), ((16, 16), 5), ((32, 32), 5), ((32, 32), 3)])
def test_folded_first_layer_matches_the_tiled_one(output_size, kernel_size):
    torch.manual_seed(0)
    decoder = SpatialBroadcastDecoder(
        slot_dim=24, image_size=(32, 32), output_size=output_size, channels=16, kernel_size=kernel_size
    )
    slots = torch.randn(3, 5, 24)
    tiled, folded = _outputs(decoder, slots, grad=True), _outputs(decoder, slots, grad=False)
    for expected, actual in zip(tiled, folded, strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        inference = decoder(slots, torch.empty(0))
    torch.testing.assert_close(inference.masks, tiled[1], rtol=1e-5, atol=1e-5)
    assert inference.masks.shape == (3, 5, *output_size)


@pytest.mark.parametrize("kernel_size", [0, 4])
def test_an_even_or_empty_kernel_is_refused(kernel_size):
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        SpatialBroadcastDecoder(slot_dim=8, image_size=(16, 16), kernel_size=kernel_size)


def test_the_fold_follows_weight_updates():
    torch.manual_seed(1)
    decoder = SpatialBroadcastDecoder(slot_dim=16, image_size=(16, 16), channels=8)
    slots = torch.randn(2, 4, 16)
    before = _outputs(decoder, slots, grad=False)
    with torch.no_grad():  # in place, as an optimizer step or load_state_dict does
        decoder.net[0].weight.mul_(1.5)
        decoder.position.project.bias.add_(0.3)
    tiled, folded = _outputs(decoder, slots, grad=True), _outputs(decoder, slots, grad=False)
    assert not torch.allclose(folded[0], before[0]), "the cached fold was reused after the weights changed"
    torch.testing.assert_close(folded[0], tiled[0], rtol=1e-5, atol=1e-5)
    decoder.net[0].weight = torch.nn.Parameter(torch.randn_like(decoder.net[0].weight))  # replaced, not in place
    torch.testing.assert_close(_outputs(decoder, slots, grad=False)[0], _outputs(decoder, slots, grad=True)[0])
