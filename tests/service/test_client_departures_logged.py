"""A client that goes away while replies to it wait in gRPC's flow control is routine, not a server error."""

from __future__ import annotations

import asyncio
import logging

import grpc
from service_helpers import make_video, raw, run

from service import wire
from service.generated import pb_grpc
from service.types import FrameRequest, OpenRequest, Output, StreamOptions


async def _cancel_with_replies_waiting(target: str) -> None:
    """Ask for large masks, send frames, read one answer and cancel: the other replies are still being sent."""
    options = StreamOptions(outputs=frozenset({Output.SLOTS, Output.SEGMENTATION}), mask_size=(1024, 1024))
    frames = make_video(seed=8, frames=10)
    async with grpc.aio.insecure_channel(target) as channel:
        call = pb_grpc.PerceptionStub(channel).Stream()
        await call.write(wire.request_to_proto(OpenRequest(options=options)))
        await call.read()
        for index, frame in enumerate(frames):
            await call.write(wire.request_to_proto(FrameRequest(index, raw(frame))))
        await call.read()
        await asyncio.sleep(0.5)
        call.cancel()
        await asyncio.sleep(0.5)


def test_a_cancel_while_replies_wait_is_logged_as_info_without_a_traceback(start_server, caplog) -> None:
    server = start_server(max_image_pixels=1024 * 1024)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            run(_cancel_with_replies_waiting(server.target))
    records = [r for r in caplog.records if r.name.startswith("grpc")]
    assert not [r for r in records if r.levelno >= logging.WARNING], [r.getMessage() for r in records]
    assert any("went away" in r.getMessage() and r.exc_info is None for r in records)
