"""Keepalive finds a peer that stopped answering (a frozen process, a half-open connection) within seconds."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from service_helpers import make_video, raw, run, wait_until
from test_server_process import ServerProcess

from service.client import Client, StreamError

REPO = Path(__file__).resolve().parents[2]

FROZEN_CLIENT = """
import asyncio, sys
import numpy as np
from service.client import Client
from service.types import EncodedImage, ImageEncoding

async def main():
    async with Client(sys.argv[1]) as client:
        stream = await client.open()
        pixels = np.zeros((32, 32, 3), np.uint8)
        await stream.process(EncodedImage(ImageEncoding.RAW_RGB8, pixels.tobytes(), 32, 32, 3))
        print("streaming", flush=True)
        await asyncio.sleep(600)

asyncio.run(main())
"""


def test_a_frozen_clients_stream_gives_up_its_place_within_seconds(start_server) -> None:
    """The stream of a client that stops answering keepalive pings counts against --max-streams until the
    server notices; gRPC's own 60 s ping timeout made that about 70 s, not the 15 s the keepalive settings say."""
    server = start_server()
    labels = {"model": server.server.config.resolved_model_name}
    client = subprocess.Popen(
        [sys.executable, "-c", FROZEN_CLIENT, server.target], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert client.stdout is not None and client.stdout.readline() == "streaming\n"
        assert server.gauge("slotstream_streams_active", labels) == 1
        client.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        wait_until(lambda: server.gauge("slotstream_streams_active", labels) == 0, timeout=30.0)
        assert time.monotonic() - frozen < 25.0
    finally:
        client.kill()
        client.wait(10)
        assert client.stdout is not None
        client.stdout.close()


def test_a_client_waiting_on_a_frozen_server_fails_within_seconds(model_dir: Path) -> None:
    """``process()`` on a server that stopped answering used to wait about 60 s (gRPC's ping timeout) for its
    error, so ``--reconnect`` started a minute late."""
    server = ServerProcess("--model-dir", str(model_dir), "--no-warmup").wait_serving()
    try:

        async def wait_on_frozen_server() -> float:
            async with Client(server.target) as client:
                stream = await client.open()
                await stream.process(raw(make_video(seed=3, frames=1)[0]))
                server.process.send_signal(signal.SIGSTOP)
                frozen = time.monotonic()
                with pytest.raises(StreamError, match="UNAVAILABLE"):
                    await stream.process(raw(make_video(seed=4, frames=1)[0]))
                return time.monotonic() - frozen

        assert run(wait_on_frozen_server(), timeout=45.0) < 25.0
    finally:
        server.process.send_signal(signal.SIGCONT)
        server.stop()
