"""How large a stream's frame replies can be, and whether the server's reply budget has room for a new stream's.

:func:`reply_bytes` is the bound a stream's options give its replies: ``StreamOpened.max_reply_bytes``, the
``--max-message-bytes`` check of an open, and the unit in which :class:`~service.reply_budget.ReplyBudget`
reserves room for the replies its client has not read.
"""

from __future__ import annotations

from service.engine import ModelCard
from service.errors import ErrorCode, StreamAbort
from service.reply_budget import ReplyBudget
from service.types import Output, StreamOptions

_REPLY_OVERHEAD_BYTES = 4096
"""A frame reply's fields besides its tensors and slot ids (stream id, model version, timestamps, latency, tensor
headers, the state's names, an echoed ``camera_frame_id`` of at most 256 bytes)."""


def reply_bytes(options: StreamOptions, card: ModelCard) -> int:
    """An upper bound on the size of a frame reply (``StreamResponse.result``) of a stream with ``options``.

    Counts the requested tensors (slots and state ``[K, D]`` float32, segmentation ``[H, W]`` uint8, soft masks
    ``[K, H, W]`` float32 or uint8) at the options' mask size (the model's input size when unset), plus a fixed
    allowance for the other fields.
    """
    height, width = options.mask_size or card.image_size
    slots, pixels = card.num_slots, height * width
    size = _REPLY_OVERHEAD_BYTES + slots * 5  # slot ids: K varints
    if options.wants(Output.SLOTS):
        size += slots * card.slot_dim * 4
    if options.wants(Output.SEGMENTATION):
        size += pixels
    if options.wants(Output.SOFT_MASKS):
        size += slots * pixels * (1 if options.soft_masks_uint8 else 4)
    if options.wants(Output.STATE):
        size += slots * card.slot_dim * 4 + slots * 5
    return size


def check_reply_room(budget: ReplyBudget, options: StreamOptions, card: ModelCard) -> None:
    """Refuse a new stream (a hand-off too: it is new on this server) for which the reply budget has no room.

    Raises:
        StreamAbort: ``TOO_MANY_STREAMS``, naming the budget and the stream's reply size.
    """
    if budget.has_room_for(bound := reply_bytes(options, card)):
        return
    needed = ReplyBudget.stream_bytes(bound, 1)
    raise StreamAbort(
        ErrorCode.TOO_MANY_STREAMS,
        f"this server's budget for replies its clients have not read ({budget.total_bytes} bytes, "
        f"--max-total-buffered-reply-bytes) has no room for this stream: its replies may be {bound} bytes at its "
        f"mask size and outputs, {needed} bytes with the ones in transit, and {budget.free_bytes} are "
        "free: retry later, connect to another replica, or ask for a smaller mask size, uint8 soft masks or "
        "fewer outputs",
    )
