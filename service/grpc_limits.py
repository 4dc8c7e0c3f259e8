"""Size limits shared by the server's configuration, its sessions, the command-line tools and the client (a light
module: no torch)."""

from __future__ import annotations

MAX_GRPC_MESSAGE_BYTES = 2**31 - 1
"""gRPC's message size options are C ints."""

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""The largest gRPC message each way unless configured: the server's ``--max-message-bytes`` default, and the
client's until it has read the server's own limit. A raw 1080p frame (6,220,800 B) fits; raw 4K (about 25 MB) does
not."""

DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
"""The largest image (width x height) and the largest mask a stream may ask for, unless configured: the server's
``--max-image-pixels`` default."""
