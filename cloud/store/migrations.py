"""Versioned schema migrations, shared by both back ends.

Each migration is a list of statements with dialect tokens (``{real}``, ``{bigint}``,
``{blob}``, ``{serial}``, ``{without_rowid}``) that each back end fills in. A store applies,
in one transaction each, every migration above the version recorded in ``schema_version``.
Never edit a released migration: append a new one.

Other components (alerts and events, ...) keep their own numbered migrations in their own
module, named in ``COMPONENTS`` as ``"module:ATTRIBUTE"`` (the same shape as
``MIGRATIONS``). Their versions are counted apart, per component, in the table
``component_version``, so a component's migrations never collide with the core's.
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "readings, streams, custody, gaps, quarantine, registry, commands, calibrations, health",
        (
            # one row per (station, epoch, outbox id): a resend is a no-op
            """CREATE TABLE readings (
                station TEXT NOT NULL,
                epoch TEXT NOT NULL,
                id {bigint} NOT NULL,
                quantity TEXT NOT NULL,
                ts {real} NOT NULL,
                value {real},
                raw {real},
                unit TEXT NOT NULL,
                q TEXT NOT NULL,
                cal TEXT NOT NULL,
                sensor TEXT,
                why TEXT,
                received {real} NOT NULL,
                PRIMARY KEY (station, epoch, id)
            ){without_rowid}""",
            "CREATE INDEX readings_series ON readings (station, quantity, ts)",
            # what each station measures, and when it last did
            """CREATE TABLE streams (
                station TEXT NOT NULL,
                quantity TEXT NOT NULL,
                unit TEXT NOT NULL,
                last_ts {real} NOT NULL,
                last_received {real} NOT NULL,
                PRIMARY KEY (station, quantity)
            )""",
            """CREATE TABLE custody (
                station TEXT NOT NULL,
                epoch TEXT NOT NULL,
                upto {bigint} NOT NULL DEFAULT 0,
                floor {bigint} NOT NULL DEFAULT 0,
                lost {bigint} NOT NULL DEFAULT 0,
                stored {bigint} NOT NULL DEFAULT 0,
                received {real},
                updated {real},
                PRIMARY KEY (station, epoch)
            )""",
            """CREATE TABLE gaps (
                station TEXT NOT NULL,
                epoch TEXT NOT NULL,
                first_id {bigint} NOT NULL,
                last_id {bigint} NOT NULL,
                detected {real} NOT NULL,
                PRIMARY KEY (station, epoch, first_id)
            )""",
            """CREATE TABLE quarantine (
                seq {serial},
                received {real} NOT NULL,
                source TEXT NOT NULL,
                topic TEXT NOT NULL,
                station TEXT,
                reason TEXT NOT NULL,
                reason_class TEXT NOT NULL,
                size {bigint} NOT NULL,
                payload {blob} NOT NULL
            )""",
            "CREATE INDEX quarantine_class ON quarantine (reason_class, seq)",
            """CREATE TABLE stations (
                id TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                status TEXT NOT NULL,
                name TEXT,
                lat {real},
                lon {real},
                inlet_height_m {real},
                gateway TEXT,
                sensors TEXT NOT NULL DEFAULT '[]',
                hj212_mn TEXT UNIQUE,
                hj212_pw TEXT,
                state TEXT NOT NULL DEFAULT 'unknown',
                state_at {real},
                epoch TEXT,
                first_seen {real},
                confirmed_at {real},
                reported TEXT NOT NULL DEFAULT '{{}}'
            )""",
            """CREATE TABLE sites (
                id TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                name TEXT,
                lat {real},
                lon {real},
                h_m {real},
                control_level TEXT,
                enterprise TEXT,
                address TEXT
            )""",
            """CREATE TABLE persons (
                site TEXT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                role TEXT,
                phone TEXT,
                email TEXT,
                webhook TEXT,
                PRIMARY KEY (site, name)
            )""",
            """CREATE TABLE areas (
                id TEXT PRIMARY KEY,
                name TEXT,
                kind TEXT NOT NULL,
                geometry TEXT NOT NULL
            )""",
            """CREATE TABLE commands (
                id TEXT PRIMARY KEY,
                station TEXT NOT NULL,
                cmd TEXT NOT NULL,
                args TEXT NOT NULL,
                issued {real} NOT NULL,
                status TEXT NOT NULL,
                acked {real},
                result TEXT NOT NULL DEFAULT '{{}}',
                error TEXT
            )""",
            "CREATE INDEX commands_station ON commands (station, issued)",
            """CREATE TABLE calibrations (
                seq {serial},
                station TEXT NOT NULL,
                sensor TEXT,
                quantity TEXT NOT NULL,
                reference TEXT NOT NULL,
                window_start {real} NOT NULL,
                window_end {real} NOT NULL,
                n {bigint} NOT NULL,
                slope {real} NOT NULL,
                intercept {real} NOT NULL,
                kappa {real},
                r2 {real} NOT NULL,
                rmse {real} NOT NULL,
                raw_slope {real} NOT NULL,
                raw_intercept {real} NOT NULL,
                raw_r2 {real} NOT NULL,
                raw_rmse {real} NOT NULL,
                meets_targets INTEGER NOT NULL,
                created {real} NOT NULL,
                command_id TEXT
            )""",
            """CREATE TABLE health (
                station TEXT PRIMARY KEY,
                status TEXT NOT NULL,
                reasons TEXT NOT NULL,
                computed {real} NOT NULL,
                last_received {real}
            )""",
        ),
    ),
)

MIGRATIONS += (
    (
        2,
        "hourly inversion results",
        (
            """CREATE TABLE inversion_results (
                hour {real} NOT NULL,
                quantity TEXT NOT NULL,
                result TEXT NOT NULL,
                computed {real} NOT NULL,
                PRIMARY KEY (hour, quantity)
            )""",
        ),
    ),
)

LATEST: Final = MIGRATIONS[-1][0]

COMPONENTS: Final[dict[str, str]] = {
    "alerts": "cloud.alerts_schema:MIGRATIONS",
}

SQLITE_TOKENS: Final = {
    "real": "REAL",
    "bigint": "INTEGER",
    "blob": "BLOB",
    "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "without_rowid": " WITHOUT ROWID",
}
POSTGRES_TOKENS: Final = {
    "real": "DOUBLE PRECISION",
    "bigint": "BIGINT",
    "blob": "BYTEA",
    "serial": "BIGSERIAL PRIMARY KEY",
    "without_rowid": "",
}


def component_migrations(name: str) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """The migrations of one component, imported from where ``COMPONENTS`` names them."""
    import importlib

    module, _, attr = COMPONENTS[name].partition(":")
    found: tuple[tuple[int, str, tuple[str, ...]], ...] = getattr(
        importlib.import_module(module), attr
    )
    return found


def statements(version: int, tokens: dict[str, str]) -> list[str]:
    for v, _, stmts in MIGRATIONS:
        if v == version:
            return [s.format(**tokens) for s in stmts]
    raise KeyError(version)
