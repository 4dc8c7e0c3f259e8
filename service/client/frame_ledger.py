"""A stream's account of its frames: :class:`FrameLedger`, which frames were sent and not answered yet (what
:meth:`ClientStream.reconnect` re-sends), whose answers nobody waits for, the index the next frame gets, and the
newest frame known to be in the server's state. Bookkeeping only: it sends and awaits nothing."""

from __future__ import annotations

from collections import OrderedDict

from service.types import FrameDropped, FrameError, FrameRequest, FrameResult


class FrameLedger:
    """The frames of one stream, as :class:`~service.client.stream.ClientStream` records them.

    Attributes:
        unanswered: the requests of the frames sent whose answers have not come, by index, in the order sent.
        abandoned: indices of frames of a cancelled :meth:`ClientStream.process`: their answers are skipped.
        next_index: the index the next frame gets when none is passed.
        folded_index: the newest frame known to be in the server's state: answered with a result, or reported by
            an open (``None``: none yet). A dropped or refused frame is not folded in, so a hand-off older than an
            answer of that kind is still exact.
    """

    def __init__(self) -> None:
        self.unanswered: OrderedDict[int, FrameRequest] = OrderedDict()
        self.abandoned: set[int] = set()
        self.next_index = 0
        self.folded_index: int | None = None

    @property
    def waiting(self) -> list[int]:
        """Indices of frames sent whose answers are still to be returned (without the :attr:`abandoned` ones)."""
        return [index for index in self.unanswered if index not in self.abandoned]

    def note_folded(self, index: int | None) -> None:
        """Record that the server's state includes frame ``index`` (``None``: nothing new)."""
        if index is not None and (self.folded_index is None or index > self.folded_index):
            self.folded_index = index

    def record(self, request: FrameRequest) -> None:
        """Record a frame as sent: unanswered, its answer awaited, and the default index moved past it."""
        index = request.frame_index
        self.unanswered[index] = request
        self.abandoned.discard(index)
        self.next_index = max(self.next_index, index + 1)  # an explicit lower index never moves it back

    def replace(self, request: FrameRequest) -> None:
        """Put ``request`` in place of the unanswered request of its frame (the same frame, to be sent another way);
        a frame not unanswered is left alone."""
        if request.frame_index in self.unanswered:
            self.unanswered[request.frame_index] = request

    def withdraw(self, index: int, next_index: int) -> None:
        """Forget frame ``index``, recorded by a :meth:`ClientStream.process` whose call ended before it was
        answered, as if it had never been sent: :meth:`ClientStream.reconnect` does not re-send it and the default
        index goes back to ``next_index`` (unless a frame recorded since moved it on).

        Exact because a call that ended without answering a frame never folds that frame into a state the
        stream continues from: a resume rewinds to the last answered frame, and a hand-off (a drain's, sent
        after the answers to every frame the server took) holds the state after an answered frame."""
        self.unanswered.pop(index, None)
        self.abandoned.discard(index)
        if self.next_index == max(next_index, index + 1):
            self.next_index = next_index

    def answered(self, message: FrameResult | FrameDropped | FrameError) -> bool:
        """Record the answer to a frame (a result folds it into the server's state); returns whether nobody waits
        for it (its :meth:`ClientStream.process` was cancelled), so the stream skips it."""
        self.unanswered.pop(message.frame_index, None)
        if isinstance(message, FrameResult):
            self.note_folded(message.frame_index)
        if message.frame_index in self.abandoned:
            self.abandoned.discard(message.frame_index)
            return True
        return False

    def keep_after(self, start: int | None) -> list[FrameRequest]:
        """After a reconnect whose server holds the state after frame ``start`` (``None``: no frame): forget the
        unanswered frames up to it and return the others, in the order sent, to be sent again. They all stay
        unanswered until answered, so a reconnect cut short while re-sending (the connection dropping again)
        leaves the next reconnect every frame it did not send."""
        pending = [request for index, request in self.unanswered.items() if start is None or index > start]
        self.unanswered = OrderedDict((request.frame_index, request) for request in pending)
        self.abandoned.intersection_update(self.unanswered)
        return pending


__all__ = ["FrameLedger"]
