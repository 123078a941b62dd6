"""The central store: one interface (``Store``), two back ends, chosen by ``[store] url``.

URLs (DESIGN 4.5)::

    sqlite:///var/lib/airtrace/cloud.db   the absolute path /var/lib/airtrace/cloud.db
    sqlite:////tmp/x.db                   also absolute (/tmp/x.db)
    sqlite:cloud.db, cloud.db             relative to the working directory
    postgresql://user@host/db             PostgreSQL via psycopg 3 (also postgres://)

``open_store(url)`` opens the store and applies pending schema migrations. The parent
directory of a SQLite file is created.

The interface (``SqlStore``; both back ends run the same SQL):

* ingest: ``commit(Batch) -> Committed``, ``add_readings(PackRows, received)``,
  ``advance_custody(station, epoch, now) -> (Custody, [Gap])``
* readings: ``iter_readings(station, since, until, quantity, epoch)`` (ordered by station,
  epoch, id), ``series(station, quantity, since, until)``, ``latest_readings(...)``,
  ``streams(station)``, ``reading_count(station)``
* custody: ``custody(station)``, ``gaps(station, epoch)``
* quarantine: ``quarantine_entries(limit, reason_class)``, ``quarantine_counts()``
* registry: ``get_station``, ``stations(status)``, ``put_station``, ``confirm_station``,
  ``delete_station``, ``station_by_mn``; ``get_site``, ``sites(kind)``, ``put_site``,
  ``delete_site``; ``get_area``, ``areas``, ``put_area``, ``delete_area``
* commands: ``add_command``, ``get_command``, ``commands(station)``; acks arrive in a Batch
* calibrations: ``add_calibration``, ``set_calibration_command``, ``calibrations(station)``
* health: ``put_health``, ``health()``
* lifecycle: ``migrate()``, ``schema_version()``, ``close()`` (also a context manager)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cloud.store.base import SqlStore, StoreError
from cloud.store.catalog import NotFound
from protocols.errors import ConfigError

Store = SqlStore

__all__ = ["NotFound", "Store", "StoreError", "StoreUrl", "open_store", "parse_store_url"]


@dataclass(frozen=True)
class StoreUrl:
    kind: str  # sqlite | postgres
    path: Path | None = None
    dsn: str | None = None


def parse_store_url(url: str) -> StoreUrl:
    """Split a store URL into its back end and location; ConfigError when it names neither."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("store url is empty")
    url = url.strip()
    scheme, sep, rest = url.partition(":")
    if sep and scheme in ("postgresql", "postgres"):
        if not rest.startswith("//"):
            raise ConfigError(f"bad PostgreSQL url {url!r}: postgresql://user@host/db")
        return StoreUrl("postgres", dsn=url)
    if sep and scheme == "sqlite":
        if rest.startswith("//"):
            rest = rest[2:]  # sqlite:///abs, sqlite:////abs -> /abs; sqlite://rel -> rel
            if rest.startswith("/"):
                rest = "/" + rest.lstrip("/")
        if not rest or rest.endswith("/"):
            raise ConfigError(f"bad SQLite url {url!r}: needs a file name")
        return StoreUrl("sqlite", path=Path(rest))
    if sep and len(scheme) > 1 and "/" not in scheme and "\\" not in scheme:
        raise ConfigError(
            f"unknown store url scheme {scheme!r} in {url!r}: sqlite:///PATH or postgresql://..."
        )
    return StoreUrl("sqlite", path=Path(url))


def open_store(url: str, *, sqlite_synchronous: str = "full", migrate: bool = True) -> SqlStore:
    """Open (and by default migrate) the store that ``url`` names."""
    parsed = parse_store_url(url)
    store: SqlStore
    if parsed.kind == "postgres":
        from cloud.store.postgres import PostgresStore

        assert parsed.dsn is not None
        store = PostgresStore(parsed.dsn)
    else:
        from cloud.store.sqlite import SqliteStore

        assert parsed.path is not None
        store = SqliteStore(parsed.path, synchronous=sqlite_synchronous)
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store
