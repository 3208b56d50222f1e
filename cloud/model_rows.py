"""The model registry's rows: statements both stores run (see ``roadsense.cloud.sql_store``)."""

from __future__ import annotations

from typing import Any, Protocol

from roadsense.cloud.domain import PublishedModel

COLUMNS = (
    "version, name, onnx_file, size, sha256, card_sha256, signature, published_ms, published_by"
)
# A version is published once: a second publish changes nothing and reports it.
INSERT = (
    f"INSERT INTO model_releases ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (version) DO NOTHING"
)
SELECT = f"SELECT {COLUMNS} FROM model_releases"


class _Session(Protocol):
    def execute(self, sql: str, params: Any = ()) -> int: ...

    def rows(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]: ...


def insert_model(db: _Session, model: PublishedModel) -> bool:
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
    )


def select_models(db: _Session, version: str | None = None) -> list[PublishedModel]:
    """Every release, oldest first, or the one of ``version``."""
    if version is None:
        rows = db.rows(f"{SELECT} ORDER BY published_ms, version")
    else:
        rows = db.rows(f"{SELECT} WHERE version = ?", [version])
    return [_model(row) for row in rows]
