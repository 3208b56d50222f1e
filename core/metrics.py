"""Prometheus endpoints: configuration and an HTTP server on its own thread."""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.registry import CollectorRegistry
from pydantic import Field

from roadsense.core.config import ConfigModel

logger = logging.getLogger(__name__)


class MetricsConfig(ConfigModel):
    """A Prometheus /metrics endpoint."""

    enabled: bool = Field(default=False, description="Serve /metrics over HTTP.")
    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(default=9108, ge=0, le=65535, description="Port; 0 picks a free one.")


class MetricsServer:
    """HTTP /metrics for one registry."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        self._server: WSGIServer
        self._thread: threading.Thread
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.port = int(self._server.server_port)
        logger.info("metrics on http://%s:%d/metrics", host, self.port)

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
