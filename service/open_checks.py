"""What an open carries, checked before a session is made of it: its stream id, its client's address and the
state a hand-off brings; and a client's stream id as logs show it."""

from __future__ import annotations

import re
import urllib.parse

import numpy as np

from service.engine import ModelCard
from service.errors import ErrorCode, StreamAbort, quoted
from service.types import StateHandoff

_STREAM_ID = re.compile(r"[A-Za-z0-9._:/-]{1,128}")
STREAM_ID_RULE = "1-128 characters from A-Z a-z 0-9 . _ : / -"
"""What a stream id may be, in words: the refusal of another says it, and so does the proto."""
MAX_STATE_MAGNITUDE = 1e6
"""Largest absolute value a hand-off state may hold (the default model's states stay below 10 in magnitude)."""


def check_stream_id(stream_id: str) -> None:
    """Raise ``INVALID_OPEN`` unless ``stream_id`` is 1-128 characters of the allowed set."""
    if not _STREAM_ID.fullmatch(stream_id):
        raise StreamAbort(
            ErrorCode.INVALID_OPEN,
            f"stream id {quoted(stream_id)} is invalid: use {STREAM_ID_RULE}",
        )


def loggable_stream_id(stream_id: str) -> str:
    """``stream_id`` as logs show an id a client sent: as is when it is a valid id, else :func:`quoted` (cut, its
    control characters escaped), so an invalid one cannot flood or forge log lines."""
    return stream_id if not stream_id or _STREAM_ID.fullmatch(stream_id) else quoted(stream_id)


def client_address(peer: str) -> str:
    """The client's address in a gRPC peer string, without its port: ``10.0.0.7`` for ``ipv4:10.0.0.7:5123``,
    ``::1`` for ``ipv6:[::1]:5123`` (gRPC percent-encodes the brackets: ``ipv6:%5B::1%5D:5123``); another kind of
    peer (``unix:...``) as it is; ``""`` when unknown."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return urllib.parse.unquote(rest).rpartition(":")[0].strip("[]")
    return peer


def check_handoff(handoff: StateHandoff, card: ModelCard) -> None:
    """Refuse a hand-off whose state cannot continue on ``card``'s model: another model version, the wrong shape
    or slot ids, or values that are not finite or beyond :data:`MAX_STATE_MAGNITUDE`.

    Raises:
        StreamAbort: ``HANDOFF_MISMATCH``, naming the first problem.
    """
    expected = (card.num_slots, card.slot_dim)
    problem = None
    if handoff.model_version != card.version:
        problem = (
            f"the hand-off state comes from model {quoted(handoff.model)} version "
            f"{quoted(handoff.model_version)}, but "
            f"this server runs {card.name!r} version {card.version!r}; state only carries over between equal "
            "versions, so open a new stream"
        )
    elif handoff.state.shape != expected:
        problem = f"the hand-off state has shape {handoff.state.shape}, this model needs {expected}"
    elif not np.isfinite(handoff.state).all():
        problem = "the hand-off state contains NaN or infinite values"
    elif handoff.state.size and (largest := float(np.abs(handoff.state).max())) > MAX_STATE_MAGNITUDE:
        problem = (
            f"the hand-off state holds a value of magnitude {largest:.3g}, beyond the {MAX_STATE_MAGNITUDE:g} "
            "any state of a working model stays within (it would overflow the model to NaN)"
        )
    elif handoff.slot_ids and len(handoff.slot_ids) != card.num_slots:
        problem = f"the hand-off has {len(handoff.slot_ids)} slot ids for {card.num_slots} slots"
    elif len(set(handoff.slot_ids)) != len(handoff.slot_ids):
        problem = (
            f"the hand-off's slot ids {list(handoff.slot_ids)} repeat an id: each slot needs its own, which every "
            "reply names the slot by"
        )
    if problem:
        raise StreamAbort(ErrorCode.HANDOFF_MISMATCH, problem)
