"""The server holds at most --max-calls gRPC calls at once besides health checks, and ends a stream call that sends
no open within --open-timeout-s: calls that hold no stream cannot pile up (each costs memory), and the probes are
always answered."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
import pytest
from service_helpers import run

from service import wire
from service.client import Client, StreamError
from service.generated import pb_grpc
from service.types import OpenRequest


def test_calls_beyond_max_calls_are_refused_until_one_ends(start_server, caplog) -> None:
    """gRPC's own cap counted the health checks too: a flood of calls that never opened failed the probes. A refusal
    is counted and logged as the server's other refusals are."""
    server = start_server(max_streams=2, max_calls=2)
    caplog.set_level(logging.WARNING, logger="service.servicer")

    async def scenario() -> None:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = pb_grpc.PerceptionStub(channel)
            held = [stub.Stream(), stub.Stream()]
            for call in held:
                await call.write(wire.request_to_proto(OpenRequest()))
                await call.read()  # opened: both calls are held by the server
            async with Client(server.target) as client:
                with pytest.raises(StreamError) as refused:
                    await client.describe()
                assert refused.value.status == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "at most 2 calls at once (--max-calls)" in refused.value.message
                await client.wait_ready(2.0)  # the probes' health check still answers: a pod is not restarted
                extra = stub.Stream()  # a third stream call is refused too, with the server's status
                await extra.write(wire.request_to_proto(OpenRequest()))
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    await extra.read()
                assert ended.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                held[0].cancel()
                for _ in range(50):  # the server sees the cancel after a moment
                    try:
                        await client.describe()
                        break
                    except StreamError:
                        await asyncio.sleep(0.05)
                else:
                    pytest.fail("a call was still refused after one of the held calls ended")

    run(scenario())
    assert server.metric("slotstream_calls_refused_total", {"code": "too_many_streams"}) >= 2
    (line,) = [r for r in caplog.records if r.getMessage() == "refused a call"]  # rate-limited: the first one
    assert line.code == "too_many_streams" and "--max-calls" in line.detail and line.method.endswith("/Describe")


def test_max_calls_below_max_streams_is_refused() -> None:
    from service.config import ConfigError, ServiceConfig

    with pytest.raises(ConfigError, match="--max-calls 3 is below --max-streams 4"):
        ServiceConfig(max_streams=4, max_calls=3)


def test_only_a_few_refused_calls_are_read_before_their_refusal(start_server) -> None:
    """A refusal reads the call's first message (so the client sees the refusal's status), but each message may be
    up to --max-message-bytes: a flood of refused calls read at once took 377 MB. Beyond MAX_DRAINING, calls are
    refused at once, unread."""
    from service.call_limit import MAX_DRAINING

    server = start_server(max_streams=1, max_calls=1)

    async def scenario() -> list[float]:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = pb_grpc.PerceptionStub(channel)
            held = stub.Stream()
            await held.write(wire.request_to_proto(OpenRequest()))
            await held.read()  # the one call allowed

            async def silent() -> float:  # a call that never sends: a drained refusal waits for its message
                started = asyncio.get_running_loop().time()
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.Stream().read()
                return asyncio.get_running_loop().time() - started

            return list(await asyncio.gather(*(silent() for _ in range(MAX_DRAINING + 4))))

    waits = sorted(run(scenario()))
    assert all(wait < 0.5 for wait in waits[:4]), waits  # refused at once, unread
    assert all(wait >= 0.9 for wait in waits[4:]), waits  # read for up to a second first


def test_both_limits_share_one_rate_limited_refusal_line_per_code(start_server, caplog) -> None:
    """The stream cap and the call cap both refuse with TOO_MANY_STREAMS: one line per 10 s for the code, as the
    README says, not one per limit."""
    server = start_server(max_streams=1, max_calls=2)
    caplog.set_level(logging.WARNING, logger="service.servicer")

    async def scenario() -> None:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = pb_grpc.PerceptionStub(channel)
            held = stub.Stream()
            await held.write(wire.request_to_proto(OpenRequest()))
            await held.read()  # the one stream
            refused = stub.Stream()  # the stream cap refuses this open
            await refused.write(wire.request_to_proto(OpenRequest()))
            with pytest.raises(grpc.aio.AioRpcError):
                await refused.read()
            silent = stub.Stream()  # a second call that sends nothing yet, holding no stream: the cap is reached
            waiting = asyncio.ensure_future(silent.read())  # starts the call
            async with Client(server.target) as client:
                for _ in range(50):
                    try:
                        await client.describe()
                    except StreamError as error:
                        if "--max-calls" in error.message:
                            break
                    await asyncio.sleep(0.05)
                else:
                    pytest.fail("the call cap never refused")
            silent.cancel()
            with contextlib.suppress(BaseException):
                await waiting

    run(scenario())
    lines = [r for r in caplog.records if r.getMessage() == "refused a call" and r.code == "too_many_streams"]
    assert len(lines) == 1, [r.detail for r in lines]
    assert server.metric("slotstream_calls_refused_total", {"code": "too_many_streams"}) >= 2
