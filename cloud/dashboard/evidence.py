"""Evidence stills for the dashboard's segment panel: what a camera sees now, with every
vehicle the detector finds in its region of interest boxed and the figures written on it.

The dashboard asks the device for a snapshot over the broker, on an account of its own
(``[dashboard] cert_file``), as ``roadsense cloud snapshot --measure`` does. Privacy rules
stay the device's: it refuses unless its ``[privacy]`` allows snapshots, and pixelates its
privacy regions before the still leaves it. One still has no history, so nothing on it is
called stopped; the camera's reported measurements beside it say that.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from roadsense.cloud.api.measure import ImageMeasurer
from roadsense.cloud.config import CloudConfig
from roadsense.cloud.fleet.snapshots import request_snapshot, roi_zone
from roadsense.core.mqtt import MqttConfig, own_account

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evidence:
    """One camera's evidence still and what was measured on it."""

    png: bytes
    vehicles: int
    occupancy: float
    detector_version: str
    capture_time_ms: int
    blurred_regions: int


class EvidenceStills:
    """Snapshots on request, measured by the cloud's detector."""

    def __init__(
        self,
        mqtt: MqttConfig,
        username: str | None,
        measurer: ImageMeasurer,
        timeout_s: float,
    ) -> None:
        self._mqtt = mqtt
        self._username = username
        self._measurer = measurer
        self._timeout_s = timeout_s

    def take(self, device_id: str, camera_id: str) -> Evidence:
        """The camera's still now, measured; CommandError when the device refuses or does
        not answer, RequestError when the still cannot be measured."""
        still = request_snapshot(
            self._mqtt, device_id, camera_id, username=self._username, timeout_s=self._timeout_s
        )
        result = self._measurer.measure(still.jpeg, roi_zone(still), explain=True)
        return Evidence(
            png=result.evidence_png,
            vehicles=len(result.classes),
            occupancy=result.occupancy,
            detector_version=result.detector_version,
            capture_time_ms=still.capture_time_ms,
            blurred_regions=still.blurred_regions,
        )


def evidence_stills(config: CloudConfig, measurer: ImageMeasurer | None) -> EvidenceStills | None:
    """The dashboard's evidence stills as configured, or None (with the reason logged)."""
    dashboard = config.dashboard
    if not dashboard.evidence:
        return None
    if measurer is None:
        logger.warning(
            "dashboard evidence stills are off: they need the cloud's detector ([classify] "
            "detector, with [classify] enabled)"
        )
        return None
    mqtt = own_account(config.mqtt, dashboard.cert_file, dashboard.key_file)
    if mqtt is None:
        logger.warning(
            "dashboard evidence stills are off: the broker takes client certificates, and "
            "the dashboard needs an account of its own ([dashboard] cert_file/key_file; on "
            "the ingest's certificate it would displace the ingest)"
        )
        return None
    return EvidenceStills(mqtt, config.ingest.username, measurer, dashboard.evidence_timeout_s)
