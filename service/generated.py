"""The generated protobuf and gRPC modules of ``proto/`` (see ``service/_pb/``).

The messages and enums are typed by the generated ``perception_pb2.pyi``; the gRPC module has no stubs.
"""

from __future__ import annotations

import importlib
from typing import Any

from service._pb import perception_pb2 as pb

#: ``slotstream.v1.Perception`` servicer base class, stub and registration (``perception_pb2_grpc``).
pb_grpc: Any = importlib.import_module("service._pb.perception_pb2_grpc")


def load_open_inference() -> tuple[Any, Any]:
    """The generated message and gRPC modules of ``proto/inference/`` (the Open Inference Protocol), imported on
    first use rather than with this module: their protobuf package, ``inference``, is the one tritonclient's and
    KServe's own stubs register, and a process cannot hold two definitions of one message, so a client of slotstream
    that never serves the protocol never registers it."""
    return (
        importlib.import_module("service._pb.open_inference_pb2"),
        importlib.import_module("service._pb.open_inference_pb2_grpc"),
    )


__all__ = ["load_open_inference", "pb", "pb_grpc"]
