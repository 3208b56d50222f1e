"""The fleet wing's rows: enrollment tokens and the identity registry, as both stores keep them.

``FleetStore`` is what enrollment, revocation and the device lists need of a store;
``FleetRows`` implements the registry's part on any engine's sessions
(``roadsense.cloud.store.session``); ``devices`` is the city's, from telemetry.
"""

from __future__ import annotations

from typing import Protocol

from roadsense.cloud.domain import DeviceRecord, RegistryEntry, TokenUse
from roadsense.cloud.store.session import Sessions

REVOKE = """INSERT INTO fleet_registry (device_id, revoked_ms, revoke_reason)
   SELECT ?, ?, ? WHERE ?
    OR EXISTS (SELECT 1 FROM devices WHERE device_id = ?)
    OR EXISTS (SELECT 1 FROM fleet_registry WHERE device_id = ?)
   ON CONFLICT (device_id) DO UPDATE
   SET revoked_ms = COALESCE(fleet_registry.revoked_ms, excluded.revoked_ms),
       revoke_reason = CASE WHEN fleet_registry.revoked_ms IS NULL
           THEN excluded.revoke_reason ELSE fleet_registry.revoke_reason END"""


class FleetStore(Protocol):
    """The device registry: telemetry's devices, enrollment tokens, enrollments, revocations."""

    def devices(self) -> list[DeviceRecord]:
        """The device registry."""

    def add_enrollment_token(
        self, token_sha256: str, device_id: str | None, expires_ms: int, uses: int, now: int
    ) -> None:
        """Keep a new enrollment token (its hash only)."""

    def use_enrollment_token(self, token_sha256: str, now: int) -> TokenUse:
        """Spend one use of a token, atomically; why not when it cannot be used."""

    def record_enrollment(self, device_id: str, certificate_serial: str, now: int) -> None:
        """Mark a device enrolled with a new certificate."""

    def revoke_device(
        self, device_id: str, reason: str, now: int, *, known_elsewhere: bool = False
    ) -> RegistryEntry | None:
        """Mark a device revoked (idempotent: the first revocation time stays).

        Only a device the registry or telemetry knows, or one ``known_elsewhere`` (by the
        fleet's CA or manifest); for any other id nothing is recorded and None is returned.
        """

    def registry(self) -> dict[str, RegistryEntry]:
        """Every device in the identity registry."""

    def revoked_devices(self) -> frozenset[str]:
        """Ids of revoked devices, whose telemetry ingest rejects."""


class FleetRows(Sessions):
    """The registry's part of ``FleetStore`` in the statements both engines run."""

    def add_enrollment_token(
        self, token_sha256: str, device_id: str | None, expires_ms: int, uses: int, now: int
    ) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO enrollment_tokens (token_sha256, device_id, created_ms, expires_ms, "
                "uses_left) VALUES (?, ?, ?, ?, ?)",
                [token_sha256, device_id, now, expires_ms, uses],
            )

    def use_enrollment_token(self, token_sha256: str, now: int) -> TokenUse:
        with self._write() as db:
            # One conditional update: two callers racing for the last use cannot both win.
            spent = db.execute(
                "UPDATE enrollment_tokens SET uses_left = uses_left - 1 "
                "WHERE token_sha256 = ? AND expires_ms > ? AND uses_left > 0",
                [token_sha256, now],
            )
            found = db.rows(
                "SELECT device_id, expires_ms FROM enrollment_tokens WHERE token_sha256 = ?",
                [token_sha256],
            )
        if not found:
            return TokenUse("unknown")
        ((device_id, expires_ms),) = found
        if spent:
            return TokenUse("ok", device_id)
        return TokenUse("expired" if expires_ms <= now else "used_up", device_id)

    def record_enrollment(self, device_id: str, certificate_serial: str, now: int) -> None:
        with self._write() as db:
            db.execute(
                """INSERT INTO fleet_registry (device_id, enrolled_ms, certificate_serial)
                   VALUES (?, ?, ?) ON CONFLICT (device_id) DO UPDATE
                   SET enrolled_ms = excluded.enrolled_ms,
                       certificate_serial = excluded.certificate_serial""",
                [device_id, now, certificate_serial],
            )

    def revoke_device(
        self, device_id: str, reason: str, now: int, *, known_elsewhere: bool = False
    ) -> RegistryEntry | None:
        with self._write() as db:
            db.execute(REVOKE, [device_id, now, reason, known_elsewhere, device_id, device_id])
        return self.registry().get(device_id)

    def registry(self) -> dict[str, RegistryEntry]:
        with self._read() as db:
            rows = db.rows(
                "SELECT device_id, enrolled_ms, revoked_ms, certificate_serial, revoke_reason "
                "FROM fleet_registry ORDER BY device_id"
            )
        return {row[0]: RegistryEntry(*row) for row in rows}

    def revoked_devices(self) -> frozenset[str]:
        with self._read() as db:
            rows = db.rows("SELECT device_id FROM fleet_registry WHERE revoked_ms IS NOT NULL")
        return frozenset(str(r[0]) for r in rows)
