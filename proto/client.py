"""Client channels to the cloud's gRPC API, opened one way by every client.

The command line, the device's model updater, enrollment and the forecast replay all call
the cloud through ``open_channel``: TLS when given a CA (and the client's certificate for
mutual TLS), the bearer token as call metadata (``bearer``), and a retry policy that tries
a call again, with backoff, when the server is unreachable (UNAVAILABLE: the call never
reached the service, so even a non-idempotent one is safe to repeat). Each call still
carries its own deadline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc

SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": "roadsense.v1.CityService"},
                    {"service": "roadsense.v1.FleetService"},
                ],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


@dataclass(frozen=True)
class ClientTls:
    """TLS towards the API: the CA that signed the server, and for mutual TLS the client's
    certificate and key (PEM bytes)."""

    ca_pem: bytes
    cert_pem: bytes | None = None
    key_pem: bytes | None = None

    def __post_init__(self) -> None:
        if (self.cert_pem is None) != (self.key_pem is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")

    @classmethod
    def read(
        cls, ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None
    ) -> ClientTls:
        """The PEM files from disk: the CA, and the client's certificate and key when both are
        given. An ``OSError`` names the file that could not be read (``filename``)."""
        ca = ca_file.read_bytes()
        if cert_file is None or key_file is None:
            return cls(ca)
        return cls(ca, cert_file.read_bytes(), key_file.read_bytes())


def open_channel(address: str, tls: ClientTls | None = None) -> grpc.Channel:
    """A channel to the API at ``address`` (``host:port``), plain when ``tls`` is None."""
    options = [("grpc.enable_retries", 1), ("grpc.service_config", SERVICE_CONFIG)]
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca_pem, private_key=tls.key_pem, certificate_chain=tls.cert_pem
    )
    return grpc.secure_channel(address, credentials, options=options)


def bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata that presents ``token`` (none without one)."""
    return (("authorization", f"Bearer {token}"),) if token else ()
