"""The generated protobuf and gRPC modules of ``proto/`` (see ``service/_pb/``), typed ``Any``.

The generated code builds its classes at import time, so a type checker cannot see them; importing the
modules through :func:`importlib.import_module` keeps the checker out of generated code.
"""

from __future__ import annotations

import importlib
from typing import Any

#: ``slotstream.v1`` messages and enums (``perception_pb2``).
pb: Any = importlib.import_module("service._pb.perception_pb2")
#: ``slotstream.v1.Perception`` servicer base class, stub and registration (``perception_pb2_grpc``).
pb_grpc: Any = importlib.import_module("service._pb.perception_pb2_grpc")
