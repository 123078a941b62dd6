"""The migrations of other components (alerts and events, ...), counted apart per component
in ``component_version``: ``migrate()`` (in ``base.py``) calls ``_migrate_component`` for
each entry of ``migrations.COMPONENTS`` after the core's own. Each of a component's
migrations is applied in one transaction; on PostgreSQL the table is locked meanwhile, so
workers starting together apply it once. A mixin of ``SqlStore``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from cloud.store.migrations import component_migrations
from protocols.errors import AirtraceError

if TYPE_CHECKING:
    from collections.abc import Callable

    _T = TypeVar("_T")

log = logging.getLogger(__name__)


class ComponentsMixin:
    if TYPE_CHECKING:  # provided by SqlStore
        kind: str
        tokens: ClassVar[dict[str, str]]

        def _write(self, work: Callable[[Any], _T]) -> _T: ...
        def _exec(self, cur: Any, sql: str, params: Sequence[Any] = ()) -> Any: ...
        def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...

    def _migrate_component(self, component: str) -> None:
        """Apply a component's own migrations, counted apart in ``component_version``."""
        migrations = component_migrations(component)

        def ensure(cur: Any) -> None:
            self._exec(
                cur,
                "CREATE TABLE IF NOT EXISTS component_version (component TEXT NOT NULL, "
                "version INTEGER NOT NULL, note TEXT NOT NULL, PRIMARY KEY (component, version))",
            )

        try:
            self._write(ensure)
        except AirtraceError:  # another worker created it at the same moment (PostgreSQL)
            self._write(ensure)
        for version, note, stmts in migrations:

            def apply(
                cur: Any, version: int = version, note: str = note, stmts: Any = stmts
            ) -> bool:
                if self.kind == "postgres":  # workers starting together: one migrates, one waits
                    self._exec(cur, "LOCK TABLE component_version IN SHARE ROW EXCLUSIVE MODE")
                row = self._exec(
                    cur,
                    "SELECT version FROM component_version WHERE component = ? AND version = ?",
                    (component, version),
                ).fetchone()
                if row is not None:
                    return False
                for stmt in stmts:
                    self._exec(cur, stmt.format(**self.tokens))
                self._exec(
                    cur,
                    "INSERT INTO component_version (component, version, note) VALUES (?, ?, ?)",
                    (component, version, note),
                )
                return True

            if self._write(apply):
                log.info("store: %s schema migrated to version %d (%s)", component, version, note)
        row = self._one(
            "SELECT MAX(version) FROM component_version WHERE component = ?", (component,)
        )
        found = int(row[0]) if row and row[0] is not None else 0
        latest = migrations[-1][0] if migrations else 0
        if found > latest:
            from cloud.store.base import StoreError

            raise StoreError(
                f"the database has {component} schema version {found}, "
                f"newer than this airtrace ({latest})"
            )
