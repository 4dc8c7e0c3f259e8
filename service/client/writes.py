"""Writing on a stream's gRPC ``Stream`` call: :func:`write_in_order`, whose writes go out in order, and whole, even
when their sender is cancelled, and :func:`end_writing_in_order`, the half-close after them (the call's reading is
:class:`~service.client.reader.CallReader`'s)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc

from service.client.exchange import mark_seen


async def write_in_order(
    call: Any,
    lock: asyncio.Lock,
    message: Any,
    done_writing: bool = False,
    pending: set[asyncio.Future[None]] | None = None,
) -> None:
    """Write ``message`` on ``call`` once the writes before it that hold ``lock`` (one lock per call) are done, then,
    with ``done_writing``, end the call's writing. The write runs as a task of its own, kept in ``pending`` until it
    ends, so that whoever cancels the call can cancel it too (grpc.aio never ends a write on a call cancelled before
    its first message went out).

    Raises:
        grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError: the call has already ended (its
            status says why).
    """

    async def write_under_lock() -> None:
        async with lock:
            await call.write(message)
            if done_writing:
                await call.done_writing()

    # Shielded: a cancelled sender must not cancel the call (grpc.aio would), and a frame it recorded as sent
    # must go out; later writes wait for it.
    write = asyncio.ensure_future(write_under_lock())
    write.add_done_callback(mark_seen)
    if pending is not None:
        pending.add(write)
        write.add_done_callback(pending.discard)
    await asyncio.shield(write)


async def end_writing_in_order(call: Any, lock: asyncio.Lock) -> None:
    """End ``call``'s writing (half-close it) once the writes before it that hold ``lock`` are done. Does nothing
    when the call has already ended or its writing was already ended."""
    async with lock:
        with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            await call.done_writing()  # a call that has ended has nothing left to end


__all__ = ["end_writing_in_order", "write_in_order"]
