"""The transport floor: a bare ``grpc.aio`` echo between two processes with the service's message sizes.

The service's gRPC overhead (end-to-end latency minus the in-process pipeline) contains what gRPC itself
costs in Python: serialising, two HTTP/2 hops over loopback and waking both event loops. This module measures
that floor on the same machine, in the same run, with an opaque-bytes bidirectional stream that answers each
request of ``request_bytes`` with ``response_bytes``, so a report can say how much of the overhead is the
transport and how much is the service's own work (decoding the messages, sessions, batching, the model
thread hop).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from multiprocessing.queues import Queue
from typing import Any

_METHOD = "/slotstream.bench.Echo/Stream"


def _serve(port_queue: Queue[int], response_bytes: int) -> None:
    """Child process: serve the echo stream on an ephemeral loopback port until terminated."""
    import grpc

    reply = b"\0" * response_bytes

    async def stream(requests: Any, context: Any) -> Any:
        async for _ in requests:
            yield reply

    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        handler = grpc.stream_stream_rpc_method_handler(stream)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("slotstream.bench.Echo", {"Stream": handler}),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        port_queue.put(port)
        await server.wait_for_termination()

    asyncio.run(main())


async def _round_trips(port: int, request_bytes: int, frames: int, warmup: int) -> list[float]:
    import grpc

    payload = b"\0" * request_bytes
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        call = channel.stream_stream(_METHOD)()
        times_ms = []
        for index in range(warmup + frames):
            started = time.perf_counter()
            await call.write(payload)
            await call.read()
            if index >= warmup:
                times_ms.append((time.perf_counter() - started) * 1e3)
        await call.done_writing()
    return times_ms


async def echo_round_trips_ms(request_bytes: int, response_bytes: int, frames: int, warmup: int = 20) -> list[float]:
    """Round-trip times (ms) of ``frames`` request/response pairs over a bare gRPC stream to a child process.

    A coroutine, so that a caller that uses ``grpc.aio`` itself (``--suite``) runs everything on one event loop:
    a second ``asyncio.run`` in a process that has used ``grpc.aio`` leaves gRPC's poller calling into the closed
    first loop ("Event loop is closed").

    Args:
        request_bytes: size of each request message (the service's serialised frame request).
        response_bytes: size of each answer (the service's serialised frame result).
        frames: round trips to time.
        warmup: untimed round trips first.
    """
    context = multiprocessing.get_context("spawn")
    port_queue: Queue[int] = context.Queue()
    server = context.Process(target=_serve, args=(port_queue, response_bytes), daemon=True)
    server.start()
    try:
        port = await asyncio.to_thread(port_queue.get, True, 60)
        return await _round_trips(port, request_bytes, frames, warmup)
    finally:
        server.terminate()
        await asyncio.to_thread(server.join, 10)
