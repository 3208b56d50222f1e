"""Unary call rates at many concurrent clients, and bare grpcio's as the baseline.

The clients keep answers as bytes (no protobuf parsing): the figure is what the server
answers per second, not what a Python client can decode. The baselines are a grpcio server
with the same thread pool, in the same run, whose methods return an empty answer
(``BARE_METHOD``) or a constant one of a given size (``SIZED_METHOD``: what moving an
answer that big costs, whatever makes it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc

BARE_METHOD = "/roadsense.bench.Bare/Ping"
SIZED_METHOD = "/roadsense.bench.Bare/Sized"


@contextmanager
def bare_unary_server(max_workers: int, answer_bytes: int = 0) -> Iterator[str]:
    """A grpcio server on 127.0.0.1 with the two baseline methods; its address."""
    sized = b"\0" * answer_bytes

    def ping(request: bytes, context: grpc.ServicerContext) -> bytes:
        return b""

    def constant(request: bytes, context: grpc.ServicerContext) -> bytes:
        return sized

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
    handler = grpc.method_handlers_generic_handler(
        "roadsense.bench.Bare",
        {
            "Ping": grpc.unary_unary_rpc_method_handler(ping),
            "Sized": grpc.unary_unary_rpc_method_handler(constant),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0).wait()


def raw_unary(channel: grpc.Channel, method: str, request: bytes) -> Callable[[], bytes]:
    """A call of ``method`` with a fixed encoded request, answering the encoded response."""
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)

    def once() -> bytes:
        answer: bytes = call(request, timeout=30)
        return answer

    return once


def concurrent_rate(call: Callable[[], bytes], clients: int, seconds: float) -> float:
    """Calls per second that ``clients`` threads, each calling in a loop, completed."""
    done = [0] * clients
    start = threading.Barrier(clients + 1)
    deadline: list[float] = []

    def client(index: int) -> None:
        start.wait()
        while time.perf_counter() < deadline[0]:
            call()
            done[index] += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline.append(began + seconds)
    start.wait()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - began)
