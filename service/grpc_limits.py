"""gRPC's own limits, shared by the server's configuration and the client (a light module: no torch)."""

from __future__ import annotations

MAX_GRPC_MESSAGE_BYTES = 2**31 - 1
"""gRPC's message size options are C ints."""
