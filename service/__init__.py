"""slotstream serving: the gRPC streaming perception service, its client and its load generator.

Public API (everything else in the package is private)::

    from service import ServiceConfig, Server, serve
    asyncio.run(serve(ServiceConfig(model_dir=Path("service/models/default"))))

The client library is :mod:`service.client`; the load generator is ``python -m service.bench``.
"""

from __future__ import annotations

from service.config import ConfigError, ServiceConfig
from service.engine import BackendUnavailable, Engine, EngineOutput, ModelCard, load_engine
from service.server import Server, serve

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "Engine",
    "EngineOutput",
    "ModelCard",
    "Server",
    "ServiceConfig",
    "load_engine",
    "serve",
]
