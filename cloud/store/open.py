"""Open the city store a configuration names: SQLite (a path) or PostgreSQL (a URL)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from roadsense.cloud.config import StoreConfig
from roadsense.cloud.store.interface import Store
from roadsense.core.errors import StoreError


def open_store(config: StoreConfig, history_interval_ms: int = 60_000) -> Store:
    """The store ``config`` names, migrated; ``StoreError`` when it cannot be opened."""
    if config.postgres_url is None:
        from roadsense.cloud.store.sqlite import SqliteStore

        return SqliteStore(config.path, history_interval_ms)
    try:
        from roadsense.cloud.store.postgres import PostgresStore
    except ImportError as err:
        raise StoreError(
            f"a PostgreSQL store needs psycopg (the 'cloud' extra): {err.msg}"
        ) from err
    return PostgresStore(
        config.postgres_url,
        history_interval_ms,
        pool_size=config.pool_size,
        timeout_s=config.timeout_s,
    )


def describe(config: StoreConfig) -> str:
    """Where the store is, for logs (no password)."""
    if config.postgres_url is None:
        return str(config.path)
    return redacted(config.postgres_url)


def redacted(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
