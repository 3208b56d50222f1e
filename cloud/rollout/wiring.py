"""The rollout controller as the cloud process runs it: its broker account and its fleet."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from roadsense.cloud.config import CloudConfig
from roadsense.cloud.fleet.rows import FleetStore
from roadsense.cloud.leader import LeaderLock
from roadsense.cloud.rollout.controller import RolloutController
from roadsense.cloud.store.interface import Store
from roadsense.core.mqtt import own_account
from roadsense.core.paho_client import MqttPublisher
from roadsense.provisioning.manifest import load_manifest

logger = logging.getLogger(__name__)


def fleet_of(config: CloudConfig, store: FleetStore) -> Callable[[], Mapping[str, str]]:
    """Devices a rollout may reach, each with its manifest site: the configured registry,
    enrolled devices and those seen in telemetry, less revoked ones."""

    def fleet() -> dict[str, str]:
        sites: dict[str, str] = {}
        if config.enrollment is not None:
            sites = {d.id: d.site for d in load_manifest(config.enrollment.manifest).devices}
        devices = set(config.known_devices()) | set(store.registry())
        devices |= {d.device_id for d in store.devices()}
        devices -= store.revoked_devices()
        return {d: sites.get(d, "") for d in sorted(devices)}

    return fleet


def build_controller(
    config: CloudConfig, store: Store, leader: LeaderLock | None = None
) -> RolloutController | None:
    """The controller this configuration asks for, or None (off, or no broker account);
    ``leader``: the lock a process must hold to move rollouts on (several API replicas)."""
    rollout = config.rollout
    if not rollout.enabled:
        return None
    mqtt = own_account(config.mqtt, rollout.cert_file, rollout.key_file)
    if mqtt is None:
        logger.warning(
            "rollouts are off: the broker takes client certificates, and the controller "
            "needs an account of its own ([rollout] cert_file/key_file; on the ingest's "
            "certificate it would displace the ingest)"
        )
        return None
    client_id = rollout.client_id or f"{config.ingest.client_id}-rollout"
    commands = MqttPublisher(mqtt, client_id, config.ingest.username)
    return RolloutController(store, rollout, commands, fleet_of(config, store), leader=leader)
