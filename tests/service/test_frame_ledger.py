"""The client's account of a stream's frames (:class:`service.client.frame_ledger.FrameLedger`): what a reconnect
sends again is every frame sent and not answered after the frame the server's state holds, in the order sent."""

from __future__ import annotations

from service.client.frame_ledger import FrameLedger
from service.errors import ErrorCode
from service.types import DropReason, EncodedImage, FrameDropped, FrameError, FrameRequest, ImageEncoding


def _request(index: int) -> FrameRequest:
    return FrameRequest(index, EncodedImage(ImageEncoding.JPEG, b"frame %d" % index))


def _ledger(indices: list[int]) -> FrameLedger:
    ledger = FrameLedger()
    for index in indices:
        ledger.record(_request(index))
    return ledger


def test_a_reconnect_sends_again_only_the_unanswered_frames_after_the_servers_state() -> None:
    ledger = _ledger([0, 1, 2, 3, 4, 5])
    ledger.answered(FrameError("cam", 1, ErrorCode.UNDECODABLE_IMAGE, "bad"))
    resent = ledger.keep_after(3)  # the server resumed from the state after frame 3: frames 0, 2 and 3 are in it
    assert [request.frame_index for request in resent] == [4, 5]
    assert list(ledger.unanswered) == [4, 5]
    assert ledger.next_index == 6


def test_a_reconnect_from_no_frame_sends_every_unanswered_frame_again_in_the_order_sent() -> None:
    ledger = _ledger([7, 3, 9])  # explicit indices, sent out of numerical order
    ledger.answered(FrameDropped("cam", 3, 0, DropReason.SUPERSEDED))
    assert [request.frame_index for request in ledger.keep_after(None)] == [7, 9]


def test_frames_abandoned_before_the_servers_state_are_forgotten_with_it() -> None:
    ledger = _ledger([0, 1, 2])
    ledger.abandoned.update({0, 2})
    ledger.keep_after(1)
    assert ledger.abandoned == {2} and ledger.waiting == []
