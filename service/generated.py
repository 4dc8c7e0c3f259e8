"""The generated protobuf and gRPC modules of ``proto/`` (see ``service/_pb/``).

The messages and enums are typed by the generated ``perception_pb2.pyi``; the gRPC module has no stubs.
"""

from __future__ import annotations

import importlib
from typing import Any

from service._pb import perception_pb2 as pb

#: ``slotstream.v1.Perception`` servicer base class, stub and registration (``perception_pb2_grpc``).
pb_grpc: Any = importlib.import_module("service._pb.perception_pb2_grpc")

__all__ = ["pb", "pb_grpc"]
