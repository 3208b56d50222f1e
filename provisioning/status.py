"""The fleet at a glance: manifest, CA record and the cloud's registry, one row per device."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadsense.provisioning.ca import issued_certificates
from roadsense.provisioning.manifest import load_manifest

if TYPE_CHECKING:
    from roadsense.cloud.store.interface import Store


def _iso(ms: int) -> str | None:
    if not ms:
        return None
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).isoformat(
        timespec="seconds"
    )


def fleet_status(
    fleet_dir: Path | None, manifest_path: Path | None, store: Store | None
) -> list[dict[str, Any]]:
    """One row per device: site, certificate (none/valid/revoked), enrolled, revoked, online,
    last seen. A revoked device may still show online until the broker reloads the CRL."""
    sites: dict[str, str] = {}
    if manifest_path is not None:
        sites = {d.id: d.site for d in load_manifest(manifest_path).devices}
    certs: dict[str, str] = {}
    if fleet_dir is not None and (fleet_dir / "ca" / "issued.json").exists():
        for item in issued_certificates(fleet_dir):
            if item.kind == "device":
                valid = item.revoked_at is None
                certs[item.common_name] = (
                    "valid" if valid or certs.get(item.common_name) == "valid" else "revoked"
                )
    seen = {}
    registry = {}
    if store is not None:
        try:
            seen = {d.device_id: d for d in store.devices()}
            registry = store.registry()
        finally:
            store.close()
    rows = []
    for device_id in sorted(sites.keys() | certs.keys() | seen.keys() | registry.keys()):
        entry = registry.get(device_id)
        record = seen.get(device_id)
        revoked = entry is not None and entry.revoked_ms is not None
        rows.append(
            {
                "device": device_id,
                "site": sites.get(device_id, ""),
                "certificate": certs.get(device_id, "none"),
                "enrolled": entry is not None and entry.enrolled_ms > 0 and not revoked,
                "revoked": revoked or certs.get(device_id) == "revoked",
                "online": bool(record and record.online),
                "last_seen": _iso(record.last_seen_ms) if record else None,
            }
        )
    return rows
