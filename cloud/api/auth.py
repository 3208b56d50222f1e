"""Bearer tokens with roles for the gRPC API.

Clients send ``authorization: Bearer <token>`` metadata. Tokens are random
strings of high entropy, so the configuration keeps only their SHA-256;
nothing here ever logs a token. A missing or unknown token is
UNAUTHENTICATED; a known token whose role may not call the method is
PERMISSION_DENIED. Health checking and reflection stay open, as generic
tools expect; so does FleetService.Enroll, which a device calls before it
has any credential but its enrollment token (checked by the servicer).
FleetService.DownloadModel called without a token is left to the servicer,
which checks the device certificate of the mutual TLS handshake.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any, Literal

import grpc
from pydantic import Field

from roadsense.core.config import ConfigModel

logger = logging.getLogger(__name__)

Role = Literal["reader", "feed", "admin"]

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/")
"""Methods anyone may call."""
OPEN_METHODS = frozenset({"/roadsense.v1.FleetService/Enroll"})
"""Methods that check their own credential (an enrollment token in the request)."""
CERTIFICATE_METHODS = frozenset({"/roadsense.v1.FleetService/DownloadModel"})
"""Methods a device calls with its certificate (mutual TLS) and no token: the servicer
checks that identity. Called with a token, they need its role like any other."""

METHOD_ROLES: Mapping[str, frozenset[str]] = {
    "/roadsense.v1.CityService/GetCityState": frozenset({"reader", "feed", "admin"}),
    "/roadsense.v1.CityService/GetCityStateDeflated": frozenset({"reader", "feed", "admin"}),
    "/roadsense.v1.CityService/WatchCityState": frozenset({"reader", "feed", "admin"}),
    "/roadsense.v1.CityService/ListSegments": frozenset({"reader", "feed", "admin"}),
    "/roadsense.v1.CityService/GetSegment": frozenset({"reader", "feed", "admin"}),
    "/roadsense.v1.CityService/GetSegmentBins": frozenset({"reader", "feed", "admin"}),
    "/roadsense.v1.CityService/GetForecast": frozenset({"reader", "feed", "admin"}),
    "/roadsense.v1.CityService/IngestObservations": frozenset({"feed", "admin"}),
    "/roadsense.v1.CityService/IngestWeather": frozenset({"feed", "admin"}),
    "/roadsense.v1.CityService/ClassifyImage": frozenset({"feed", "admin"}),
    "/roadsense.v1.CityService/MeasureImage": frozenset({"feed", "admin"}),
    "/roadsense.v1.FleetService/ListDevices": frozenset({"admin"}),
    "/roadsense.v1.FleetService/GetDevice": frozenset({"admin"}),
    "/roadsense.v1.FleetService/RevokeDevice": frozenset({"admin"}),
}
"""Roles allowed per method; a method not listed needs ``admin``."""


class TokenConfig(ConfigModel):
    """One client's token, stored as its SHA-256."""

    name: str = Field(description="Who holds the token (shown in logs instead of the token).")
    role: Role = Field(description="reader (read city state), feed (push feeds), admin (all).")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="Hex SHA-256 of the token; `roadsense cloud token` makes one.",
    )


class AuthConfig(ConfigModel):
    """Who may call the gRPC API."""

    tokens: list[TokenConfig] = Field(
        default_factory=list,
        description="Client tokens. With none, the API is open to anyone who can reach it "
        "(logged as a warning at start).",
    )


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token, as the configuration stores it."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh random token and its hash."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def token_holder(config: AuthConfig, token: str) -> TokenConfig | None:
    """The configured holder of ``token`` (compared in constant time), or None."""
    digest = hash_token(token)
    return next((t for t in config.tokens if hmac.compare_digest(t.sha256, digest)), None)


def peer_common_name(context: grpc.ServicerContext) -> str | None:
    """The CN of the client certificate the TLS handshake verified (None: no certificate)."""
    # grpcio gives a list of values per key (its stubs say bytes).
    value: object = context.auth_context().get("x509_common_name")
    first = value[0] if isinstance(value, list) and value else value
    return first.decode(errors="replace") if isinstance(first, bytes) else None


def has_bearer_token(context: grpc.ServicerContext) -> bool:
    """True when the call carries ``authorization: Bearer`` metadata."""
    return any(
        key == "authorization" and isinstance(value, str) and value.startswith("Bearer ")
        for key, value in context.invocation_metadata() or ()
    )


def _abort_handler(
    handler: grpc.RpcMethodHandler[Any, Any], code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler[Any, Any]:
    def abort(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            abort, handler.request_deserializer, handler.response_serializer
        )
    return grpc.unary_unary_rpc_method_handler(
        abort, handler.request_deserializer, handler.response_serializer
    )


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Checks the bearer token and the role of every call."""

    def __init__(self, config: AuthConfig) -> None:
        self._config = config

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_SERVICES) or method in OPEN_METHODS:
            return handler
        token = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                token = value[len("Bearer ") :]
        if token is None and method in CERTIFICATE_METHODS:
            return handler
        if token is None:
            return _abort_handler(
                handler, grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer' token"
            )
        holder = token_holder(self._config, token)
        if holder is None:
            return _abort_handler(handler, grpc.StatusCode.UNAUTHENTICATED, "unknown token")
        allowed = METHOD_ROLES.get(method, frozenset({"admin"}))
        if holder.role not in allowed:
            logger.info("denied %s to %s (role %s)", method, holder.name, holder.role)
            return _abort_handler(
                handler,
                grpc.StatusCode.PERMISSION_DENIED,
                f"role {holder.role!r} may not call {method}",
            )
        return handler
