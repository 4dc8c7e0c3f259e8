"""A shutdown keeps to its documented bound when a client process is frozen (SIGSTOP) with large replies queued for
it: gRPC's own stop would wait until the connection's ping times out (about 5 s), so the server abandons it after
``GRPC_STOP_S``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from service_helpers import wait_until

from service.server import GRPC_STOP_S

REPO = Path(__file__).resolve().parents[2]

# Opens a stream asking for a 4000 x 4000 segmentation (16 MB a reply), sends frames without end and reads the
# replies, printing a line for each, for 60 s at most.
CLIENT = textwrap.dedent(
    """
    import asyncio, sys
    import grpc
    import numpy as np
    from service.generated import pb, pb_grpc

    target = sys.argv[1]
    image = pb.Image(
        encoding=pb.IMAGE_ENCODING_RAW_RGB8, data=np.zeros((24, 24, 3), np.uint8).tobytes(), height=24, width=24,
        channels=3,
    )

    async def requests():
        options = pb.StreamOptions(outputs=[pb.OUTPUT_SEGMENTATION], mask_height=4000, mask_width=4000)
        yield pb.StreamRequest(open=pb.OpenStream(options=options))
        index = 0
        while True:
            yield pb.StreamRequest(frame=pb.Frame(frame_index=index, image=image))
            index += 1
            await asyncio.sleep(0.02)

    async def main():
        # A fixed 64 MiB window: the server may send more than the socket's buffers hold, so they fill up.
        options = [
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", 64 << 20),
        ]
        async with grpc.aio.insecure_channel(target, options=options) as ch:
            async for reply in pb_grpc.PerceptionStub(ch).Stream(requests()):
                print(reply.WhichOneof("kind"), flush=True)

    asyncio.run(asyncio.wait_for(main(), 60))
    """
)


def test_shutdown_abandons_a_frozen_clients_connection_after_grpc_stop_s(start_server):
    server = start_server(grace_period_s=0.5, max_pending_frames=8)
    with subprocess.Popen(
        [sys.executable, "-c", CLIENT, server.target],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    ) as client:
        try:
            assert client.stdout is not None and client.stderr is not None
            replies = [client.stdout.readline() for _ in range(3)]  # "" once it has ended (within 60 s)
            assert replies == ["opened\n", "result\n", "result\n"], client.stderr.read()
            client.send_signal(signal.SIGSTOP)
            # It sent frames ahead: their replies, larger than the sockets' buffers, wait for it (1 s, by the gauge).
            wait_until(lambda: server.metric("slotstream_streams_not_reading") >= 1, timeout=30)
            started = time.monotonic()
            server.stop(0.5)
            elapsed = time.monotonic() - started
        finally:
            client.send_signal(signal.SIGCONT)
            client.kill()
    # The grace, the calls' cancel and their connections' close (GRPC_STOP_S each at most), and a second for the
    # rest (the model's close, a loaded machine): a frozen client held the stop for as long as it stayed frozen.
    assert elapsed < 0.5 + 2 * GRPC_STOP_S + 1.0, f"stop(0.5) took {elapsed:.1f} s with a frozen client"
    assert server.server.connections_abandoned, f"gRPC stopped by itself in {elapsed:.1f} s: the client was not stuck"


def test_a_reading_clients_long_call_is_cancelled_not_abandoned(start_server):
    """An idle reflection stream (a tool such as grpcurl keeps one open) is a call still running when the drain
    ends, but its client reads: cancelled after its grace, its connection closes, and nothing is abandoned."""
    import queue
    import threading

    import grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    server = start_server()
    requests: queue.Queue[reflection_pb2.ServerReflectionRequest | None] = queue.Queue()
    requests.put(reflection_pb2.ServerReflectionRequest(list_services=""))
    outcome: list[object] = []

    def call() -> None:
        with grpc.insecure_channel(server.target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            try:
                for _ in stub.ServerReflectionInfo(iter(requests.get, None)):
                    outcome.append("reply")
            except grpc.RpcError as error:
                outcome.append(error.code())

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    wait_until(lambda: outcome == ["reply"], timeout=10)  # the call is open and answered
    try:
        server.stop(5.0)
    finally:
        requests.put(None)
    assert not server.server.connections_abandoned, "a client that reads was taken for one that does not"
    thread.join(10)
    assert outcome[1:] in ([grpc.StatusCode.UNAVAILABLE], [grpc.StatusCode.CANCELLED]), outcome
