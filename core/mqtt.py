"""MQTT connection settings shared by the edge agent and the cloud ingest."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from roadsense.core.config import ConfigModel, relative_to


class TlsConfig(ConfigModel):
    """TLS towards the broker; client certificate and key for mutual TLS."""

    ca_file: Path = Field(description="CA certificate (PEM) that signed the broker's certificate.")
    cert_file: Path | None = Field(
        default=None, description="Client certificate (PEM) for mutual TLS; CN = device id."
    )
    key_file: Path | None = Field(
        default=None, description="Private key (PEM) of the client certificate."
    )

    def resolved(self, base: Path) -> TlsConfig:
        """Copy with relative file paths made relative to ``base`` (the config's folder)."""
        return self.model_copy(
            update={
                "ca_file": relative_to(base, self.ca_file),
                "cert_file": relative_to(base, self.cert_file),
                "key_file": relative_to(base, self.key_file),
            }
        )


class MqttConfig(ConfigModel):
    """Where and how to reach the MQTT broker."""

    host: str = Field(default="127.0.0.1", description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker TCP port.")
    protocol: Literal["5", "3.1.1"] = Field(
        default="5",
        description="MQTT protocol version. 5 in production; 3.1.1 only for brokers "
        "without MQTT 5 (the demo's embedded fallback broker).",
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive in seconds.")
    session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=0,
        description="How long the broker keeps the session (subscriptions, queued QoS 1 "
        "messages) after a disconnect (MQTT 5).",
    )
    password_file: Path | None = Field(
        default=None, description="File holding the MQTT password, when the broker wants one."
    )
    tls: TlsConfig | None = Field(default=None, description="TLS settings; plain TCP when absent.")
    reconnect_min_s: float = Field(
        default=1.0, gt=0, description="First reconnect delay; doubles up to reconnect_max_s."
    )
    reconnect_max_s: float = Field(default=60.0, gt=0, description="Longest reconnect delay.")

    def resolved(self, base: Path) -> MqttConfig:
        """Copy with relative file paths made relative to ``base`` (the config's folder)."""
        tls = self.tls.resolved(base) if self.tls is not None else None
        return self.model_copy(
            update={"tls": tls, "password_file": relative_to(base, self.password_file)}
        )


QUEUE_AND_LOG_SETTINGS = """\
# Mosquitto's default (1000) silently drops QoS 1 messages for a subscriber that
# falls behind (docs/pitfalls.md #2): keep far more, bounded in bytes too.
max_queued_messages 1000000
max_queued_bytes 1073741824
max_inflight_messages 1000
set_tcp_nodelay true
log_dest stdout
log_type error
log_type warning
log_type notice
"""
"""Every RoadSense Mosquitto config ends its global part with these."""


def own_account(
    config: MqttConfig, cert_file: Path | None, key_file: Path | None
) -> MqttConfig | None:
    """``config`` for a cloud process with a broker account of its own (the rollout
    controller, the dashboard's evidence stills): its client certificate in place of the
    ingest's. None when the broker takes client certificates and no own one is given: on
    the ingest's, whose CN is its client id, the process would displace the ingest."""
    tls = config.tls
    if tls is None or tls.cert_file is None:
        return config
    if cert_file is None:
        return None
    own = tls.model_copy(update={"cert_file": cert_file, "key_file": key_file})
    return config.model_copy(update={"tls": own})
