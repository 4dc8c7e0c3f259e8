"""The server holds at most --max-calls gRPC calls at once besides health checks, and ends a stream call that sends
no open within --open-timeout-s: calls that hold no stream cannot pile up (each costs memory), and the probes are
always answered."""

from __future__ import annotations

import asyncio
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
