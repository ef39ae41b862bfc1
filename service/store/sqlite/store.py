"""The embedded Store backend: one SQLite file in WAL mode, one connection, one writer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.store.sqlite.bookings import Bookings
from service.store.sqlite.keys import Keys
from service.store.sqlite.queues import Queues
from service.store.sqlite.unresolved import Unresolved

if TYPE_CHECKING:
    from service.store.base import Store


class SQLiteStore(Bookings, Keys, Queues, Unresolved):
    """Store backed by one SQLite file; open it with `await SQLiteStore.open(url)`."""


if TYPE_CHECKING:
    # Lets mypy check that SQLiteStore implements every method of the Store protocol.
    def _implements_store(store: SQLiteStore) -> Store:
        return store
