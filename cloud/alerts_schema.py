"""The tables of alerts, routing, notifications, events and their actors: the ``alerts``
component's own migrations (``cloud.store.migrations.COMPONENTS``), same dialect tokens as
the core's. Never edit a released migration: append a new one.
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[tuple[int, str, tuple[str, ...]], ...]] = (
    (
        1,
        "alerts, groups, silences, outbox, events, event log, orders, rates, users",
        (
            # one row per alert identity (fingerprint of its labels without the level)
            """CREATE TABLE alerts (
                fingerprint TEXT PRIMARY KEY,
                rule TEXT NOT NULL,
                kind TEXT NOT NULL,
                labels TEXT NOT NULL,
                annotations TEXT NOT NULL,
                level TEXT NOT NULL,
                state TEXT NOT NULL,
                value {real},
                starts_at {real} NOT NULL,
                updated_at {real} NOT NULL,
                ends_at {real},
                event_id TEXT
            )""",
            "CREATE INDEX alerts_state ON alerts (state, updated_at)",
            # routing state of each (route, group): when it flushes next, what it last said
            """CREATE TABLE alert_groups (
                route TEXT NOT NULL,
                group_key TEXT NOT NULL,
                created {real} NOT NULL,
                next_flush {real} NOT NULL,
                notified_at {real},
                notified TEXT NOT NULL DEFAULT '[]',
                PRIMARY KEY (route, group_key)
            )""",
            """CREATE TABLE silences (
                id TEXT PRIMARY KEY,
                matchers TEXT NOT NULL,
                starts_at {real} NOT NULL,
                ends_at {real} NOT NULL,
                created_by TEXT NOT NULL,
                comment TEXT NOT NULL,
                created {real} NOT NULL
            )""",
            # the durable outbox of notifications: nothing is sent that was not written here
            """CREATE TABLE notifications (
                id TEXT PRIMARY KEY,
                receiver TEXT NOT NULL,
                route TEXT,
                group_key TEXT,
                payload TEXT NOT NULL,
                created {real} NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_at {real} NOT NULL,
                last_error TEXT,
                sent_at {real},
                escalated_from TEXT
            )""",
            "CREATE INDEX notifications_due ON notifications (status, next_at)",
            """CREATE TABLE events (
                id TEXT PRIMARY KEY,
                key TEXT NOT NULL,
                state TEXT NOT NULL,
                level TEXT NOT NULL,
                escalation INTEGER NOT NULL DEFAULT 0,
                title TEXT NOT NULL,
                kind TEXT NOT NULL,
                site TEXT,
                cell TEXT,
                area TEXT,
                station TEXT,
                quantity TEXT,
                source_type TEXT,
                x_m {real},
                y_m {real},
                labels TEXT NOT NULL,
                assignee TEXT,
                created {real} NOT NULL,
                updated {real} NOT NULL,
                dispatched_at {real},
                rectified_at {real},
                closed_at {real},
                ack_due {real},
                rectify_due {real},
                ack_escalated INTEGER NOT NULL DEFAULT 0,
                rectify_escalated INTEGER NOT NULL DEFAULT 0,
                rework INTEGER NOT NULL DEFAULT 0,
                merged_into TEXT
            )""",
            "CREATE INDEX events_key ON events (key, state)",
            # the audit trail: rows are only ever inserted
            """CREATE TABLE event_log (
                seq {serial},
                event_id TEXT NOT NULL,
                ts {real} NOT NULL,
                actor TEXT NOT NULL,
                role TEXT NOT NULL,
                action TEXT NOT NULL,
                from_state TEXT,
                to_state TEXT,
                detail TEXT NOT NULL
            )""",
            "CREATE INDEX event_log_event ON event_log (event_id, seq)",
            # orders to machines on behalf of an event, and what became of each
            """CREATE TABLE event_commands (
                command_id TEXT PRIMARY KEY,
                event_id TEXT NOT NULL,
                station TEXT NOT NULL,
                cmd TEXT NOT NULL,
                args TEXT NOT NULL,
                purpose TEXT NOT NULL,
                issued {real} NOT NULL,
                deadline {real} NOT NULL,
                status TEXT NOT NULL,
                settled_at {real},
                result TEXT NOT NULL DEFAULT '{{}}',
                error TEXT
            )""",
            "CREATE INDEX event_commands_open ON event_commands (status, deadline)",
            # the emission estimate at an event's place, hour by hour (verification evidence)
            """CREATE TABLE event_rates (
                event_id TEXT NOT NULL,
                hour {real} NOT NULL,
                quantity TEXT NOT NULL,
                rate {real} NOT NULL,
                sigma {real},
                detected INTEGER NOT NULL,
                source TEXT NOT NULL,
                PRIMARY KEY (event_id, hour, quantity)
            )""",
            # people who act through the API, one token each (stored as its SHA-256)
            """CREATE TABLE actors (
                name TEXT PRIMARY KEY,
                role TEXT NOT NULL,
                site TEXT,
                cells TEXT NOT NULL DEFAULT '[]',
                webhook TEXT,
                token_sha256 TEXT UNIQUE,
                created {real} NOT NULL,
                disabled INTEGER NOT NULL DEFAULT 0
            )""",
        ),
    ),
)
