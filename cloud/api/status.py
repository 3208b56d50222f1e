"""Domain errors → gRPC status codes, in one place.

Servicer methods raise RoadSense errors and never call ``context.abort``
themselves; ``unary`` and ``streaming`` wrap them so that a client's mistake
comes back as the status its error class maps to, with the error's one-line
message as details, never as UNKNOWN and a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import NoReturn, TypeVar

import grpc

from roadsense.cloud.fleet.enrollment import EnrollmentRefusedError
from roadsense.core.errors import (
    AccessDeniedError,
    NotConfiguredError,
    NotFoundError,
    NotServingError,
    RequestError,
    RoadSenseError,
    StoreError,
)

_Servicer = TypeVar("_Servicer")
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")

STATUS_CODES: tuple[tuple[type[RoadSenseError], grpc.StatusCode], ...] = (
    (RequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (NotConfiguredError, grpc.StatusCode.FAILED_PRECONDITION),
    (NotServingError, grpc.StatusCode.UNAVAILABLE),
    (StoreError, grpc.StatusCode.UNAVAILABLE),
    (AccessDeniedError, grpc.StatusCode.PERMISSION_DENIED),
)
"""First match wins; any other RoadSenseError is FAILED_PRECONDITION."""
REFUSAL_CODES = {
    "token": grpc.StatusCode.UNAUTHENTICATED,
    "csr": grpc.StatusCode.INVALID_ARGUMENT,
    "device": grpc.StatusCode.FAILED_PRECONDITION,
}
"""Enrollment refusals by the part of the request that was wrong."""


def status_code(err: RoadSenseError) -> grpc.StatusCode:
    """The status a domain error answers with."""
    if isinstance(err, EnrollmentRefusedError):
        return REFUSAL_CODES[err.kind]
    for kind, code in STATUS_CODES:
        if isinstance(err, kind):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


def _abort(context: grpc.ServicerContext, err: RoadSenseError) -> NoReturn:
    context.abort(status_code(err), str(err))


def unary(
    method: Callable[[_Servicer, _Request, grpc.ServicerContext], _Response],
) -> Callable[[_Servicer, _Request, grpc.ServicerContext], _Response]:
    """A unary RPC whose domain errors become their status codes."""

    @functools.wraps(method)
    def translated(self: _Servicer, request: _Request, context: grpc.ServicerContext) -> _Response:
        try:
            return method(self, request, context)
        except RoadSenseError as err:
            _abort(context, err)

    return translated


def streaming(
    method: Callable[[_Servicer, _Request, grpc.ServicerContext], Iterator[_Response]],
) -> Callable[[_Servicer, _Request, grpc.ServicerContext], Iterator[_Response]]:
    """A server-streaming RPC whose domain errors become their status codes."""

    @functools.wraps(method)
    def translated(
        self: _Servicer, request: _Request, context: grpc.ServicerContext
    ) -> Iterator[_Response]:
        try:
            yield from method(self, request, context)
        except RoadSenseError as err:
            _abort(context, err)

    return translated
