"""The embedded Store backend (one SQLite file): schema, connection, and the store."""

from service.store.sqlite.connection import DEFAULT_BUSY_TIMEOUT, URL_SCHEME, database_path
from service.store.sqlite.schema import MIGRATIONS
from service.store.sqlite.store import SQLiteStore

__all__ = ["DEFAULT_BUSY_TIMEOUT", "MIGRATIONS", "URL_SCHEME", "SQLiteStore", "database_path"]
