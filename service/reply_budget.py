"""The server-wide budget of buffered replies.

A stream whose client does not read holds finished replies in the server (up to ``--max-buffered-reply-bytes``
of its reply-size bound). That bound is per stream; :class:`ReplyBudget` caps the sum over every stream at
``--max-total-buffered-reply-bytes`` (by default a quarter of the memory the server may use), so that many
streams asking for large masks cannot together exhaust the server's memory and get it killed, which would end
every stream on it.
"""

from __future__ import annotations

AUTO_REPLY_BUDGET_FRACTION = 4
"""``--max-total-buffered-reply-bytes 0`` (auto) takes the memory limit divided by this."""


REPLIES_IN_TRANSIT = 2
"""Replies of a stream that gRPC holds beyond its window: the one it is sending and the one handed to it next (a
stream's window counts the replies not yet handed to gRPC)."""


class ReplyBudget:
    """The server-wide bound on the bytes of replies that streams may hold for their clients.

    Each stream reserves, when its call opens it, room for the replies it may run ahead of its client plus the
    :data:`REPLIES_IN_TRANSIT` that gRPC holds (each counted at the stream's reply-size bound), and gives it back
    when the call ends (most of it as soon as the server takes the stream from the call). A new stream that would
    not find room for a window of one reply is refused (see :meth:`has_room_for`); a stream that comes back (a
    resume) always gets one, since its state is already held, so the reserved total can exceed the budget by the
    replies of resumed streams.

    Args:
        total_bytes: the budget, in bytes (at least 1).

    Raises:
        ValueError: ``total_bytes`` is below 1.
    """

    def __init__(self, total_bytes: int) -> None:
        if total_bytes < 1:
            raise ValueError(f"the reply budget must be at least 1 byte, got {total_bytes}")
        self.total_bytes = total_bytes
        self.reserved_bytes = 0

    @property
    def free_bytes(self) -> int:
        """Bytes not reserved by any stream (0 when resumed streams took the budget past its total)."""
        return max(0, self.total_bytes - self.reserved_bytes)

    @staticmethod
    def stream_bytes(reply_bytes: int, window: int) -> int:
        """What a stream with a window of ``window`` replies of ``reply_bytes`` reserves (gRPC's replies too)."""
        return (window + REPLIES_IN_TRANSIT) * reply_bytes

    def has_room_for(self, reply_bytes: int) -> bool:
        """Whether a stream with a window of one reply of ``reply_bytes`` fits in what is free."""
        return self.stream_bytes(reply_bytes, 1) <= self.free_bytes

    def reserve(self, reply_bytes: int, wanted: int) -> int:
        """Reserve room for a window of up to ``wanted`` replies of ``reply_bytes`` each (at least one), plus
        gRPC's.

        Returns:
            The window: ``max(1, min(wanted, free // reply_bytes - REPLIES_IN_TRANSIT))`` replies. Give back
            :meth:`stream_bytes` of it with :meth:`release` when the stream's call ends.
        """
        fits = self.free_bytes // max(1, reply_bytes) - REPLIES_IN_TRANSIT
        window = max(1, min(wanted, fits))
        self.reserved_bytes += self.stream_bytes(reply_bytes, window)
        return window

    def release(self, reserved_bytes: int) -> None:
        """Give back bytes reserved with :meth:`reserve`."""
        self.reserved_bytes = max(0, self.reserved_bytes - reserved_bytes)
