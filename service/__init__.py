"""slotstream serving: the gRPC streaming perception service, its client and its load generator.

Public API (everything else in the package is private)::

    from service import ServiceConfig, Server, serve
    asyncio.run(serve(ServiceConfig(model_dir=Path("service/models/default"))))

Frames held in memory run through a stream of the service in this process, without a server, with
:class:`~service.local_stream.LocalStream`. The client library is :mod:`service.client`; the load generator is
``python -m service.bench``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.lazy import lazy_exports

if TYPE_CHECKING:
    from service.config import ConfigError, ServiceConfig
    from service.engine import BackendUnavailable, Engine, EngineOutput, ModelCard, load_engine
    from service.local_stream import LocalResult, LocalStream
    from service.process import serve
    from service.server import Server

_EXPORTS = {
    "BackendUnavailable": "service.engine",
    "ConfigError": "service.config",
    "Engine": "service.engine",
    "EngineOutput": "service.engine",
    "load_engine": "service.engine",
    "LocalResult": "service.local_stream",
    "LocalStream": "service.local_stream",
    "ModelCard": "service.engine",
    "serve": "service.process",
    "Server": "service.server",
    "ServiceConfig": "service.config",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "Engine",
    "EngineOutput",
    "LocalResult",
    "LocalStream",
    "ModelCard",
    "Server",
    "ServiceConfig",
    "load_engine",
    "serve",
]
