"""The gRPC server's channel options, each with the reason for its value."""

from __future__ import annotations


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """The options the server's ``grpc.aio.server`` is made with: ``max_message_bytes`` both ways
    (``--max-message-bytes``), keepalive that finds dead peers within seconds, and no SO_REUSEPORT."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # gRPC's bandwidth-delay probing widens a stream's receive window while its client sends faster than
        # the stream is read, so clients could push many frames per stream into the server's HTTP/2 buffers
        # beyond the one being read that the memory budget counts (8 streams of 16.7 MB frames: +2.1 GB, about
        # 8 frames each). Without it a stream holds at most its fixed window (64 KiB) beyond the message being
        # read, at the same throughput on loopback.
        ("grpc.http2.bdp_probe", 0),
        # No grpc.max_concurrent_streams: calls are counted and refused when their headers arrive (call_limit),
        # and with a cap a gRPC client that cancelled calls before their first message stopped starting calls
        # on that connection (grpcio 1.85: 40 such cancels under a cap of 14 left a call waiting 43 s).
        # Find dead peers (half-open connections) so their streams are detached or freed promptly.
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        # gRPC acts on an unanswered keepalive ping only after its own ping timeout, 60 s by default: without
        # this a frozen client's streams held their places for about 70 s (measured), not 15 s.
        ("grpc.http2.ping_timeout_ms", 5_000),
        # Let robots keep idle connections alive with pings without being sent GOAWAY.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_ping_strikes", 0),
        # gRPC sets SO_REUSEPORT by default on Linux: a second server on a busy port would then bind too and
        # take a share of the connections. A busy port must fail instead.
        ("grpc.so_reuseport", 0),
    ]


__all__ = ["server_options"]
