"""The release wing's rows: published models, as both stores keep them.

``ReleaseStore`` is what publishing and delivery need of a store; ``ReleaseRows`` implements
it on any engine's sessions (``roadsense.cloud.store.session``).
"""

from __future__ import annotations

from typing import Any, Protocol

from roadsense.cloud.domain import PublishedModel
from roadsense.cloud.store.session import Sessions, SqlSession

COLUMNS = (
    "version, name, onnx_file, size, sha256, card_sha256, signature, published_ms, "
    "published_by, kind"
)
# A version is published once: a second publish changes nothing and reports it.
INSERT = (
    f"INSERT INTO model_releases ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (version) DO NOTHING"
)
SELECT = f"SELECT {COLUMNS} FROM model_releases"


def insert_model(db: SqlSession, model: PublishedModel) -> bool:
    """Add a release; False when its version is published already."""
    return (
        db.execute(
            INSERT,
            [
                model.version,
                model.name,
                model.onnx_file,
                model.size,
                model.sha256,
                model.card_sha256,
                model.signature.hex(),
                model.published_ms,
                model.published_by,
                model.kind,
            ],
        )
        > 0
    )


def _model(row: tuple[Any, ...]) -> PublishedModel:
    return PublishedModel(
        version=str(row[0]),
        name=str(row[1]),
        onnx_file=str(row[2]),
        size=int(row[3]),
        sha256=str(row[4]),
        card_sha256=str(row[5]),
        signature=bytes.fromhex(str(row[6])),
        published_ms=int(row[7]),
        published_by=str(row[8]),
        kind=str(row[9]),
    )


def select_models(db: SqlSession, version: str | None = None) -> list[PublishedModel]:
    """Every release, oldest first, or the one of ``version``."""
    if version is None:
        rows = db.rows(f"{SELECT} ORDER BY published_ms, version")
    else:
        rows = db.rows(f"{SELECT} WHERE version = ?", [version])
    return [_model(row) for row in rows]


class ReleaseStore(Protocol):
    """Published model releases."""

    def add_model(self, model: PublishedModel) -> bool:
        """Record a published model release; False (nothing changed) when its version exists."""

    def models(self) -> list[PublishedModel]:
        """Every published model release, oldest first."""

    def model(self, version: str) -> PublishedModel | None:
        """The release published as ``version``, or None."""


class ReleaseRows(Sessions):
    """``ReleaseStore`` in the statements both engines run."""

    def add_model(self, model: PublishedModel) -> bool:
        with self._write() as db:
            return insert_model(db, model)

    def models(self) -> list[PublishedModel]:
        with self._read() as db:
            return select_models(db)

    def model(self, version: str) -> PublishedModel | None:
        with self._read() as db:
            found = select_models(db, version)
        return found[0] if found else None
