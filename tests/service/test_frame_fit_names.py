"""``FrameFit.named`` and ``FrameFit.fit_name``: the one conversion between ``plugins.frame_fit``'s names and the
proto enum, used by the server's flag, the model's recorded fit, the wire's model card and the client's flag."""

from __future__ import annotations

import pytest

from plugins.frame_fit import FRAME_FITS
from service import wire
from service.engine import ModelCard
from service.session_limits import SessionLimits
from service.types import FrameFit


def test_every_fit_name_round_trips_and_unspecified_has_none():
    assert [FrameFit.named(name) for name in FRAME_FITS] == [FrameFit.STRETCH, FrameFit.CROP, FrameFit.PAD]
    assert [FrameFit.named(name).fit_name for name in FRAME_FITS] == list(FRAME_FITS)
    with pytest.raises(ValueError, match="must be STRETCH, CROP or PAD"):
        _ = FrameFit.UNSPECIFIED.fit_name
    for name in ("unspecified", "CROP", "auto", ""):
        with pytest.raises(ValueError, match="must be one of stretch, crop, pad"):
            FrameFit.named(name)


def card(**fields: object) -> ModelCard:
    base = {
        "name": "m",
        "version": "v",
        "backend": "torch",
        "device": "cpu",
        "image_size": (8, 8),
        "num_slots": 2,
        "slot_dim": 4,
        "mask_size": (2, 2),
        "max_batch_size": 1,
        "preprocessing": "",
    }
    return ModelCard(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize("fit", [*FRAME_FITS, None])
def test_the_model_card_carries_fits_by_name_over_the_wire(fit):
    sent = card(frame_fit=fit, default_frame_fit=fit)
    received = wire.card_from_proto(wire.card_to_proto(sent, []))
    assert (received.frame_fit, received.default_frame_fit) == (fit, fit)
    assert SessionLimits().frame_fit_for(sent) == (FrameFit.named(fit) if fit else FrameFit.STRETCH)


def test_a_fit_value_this_client_does_not_know_reads_as_none():
    message = wire.card_to_proto(card(frame_fit="pad"), [])
    message.trained_frame_fit = 99
    assert wire.card_from_proto(message).frame_fit is None
