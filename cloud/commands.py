"""Orders to gateways on ``down/cmd`` (DESIGN 4.2): recorded first, then published; the
gateway's answer on ``up/ack`` reaches the same record through ingest."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from cloud.store import Store
from cloud.store.types import CommandRecord
from protocols.errors import AirtraceError
from protocols.telemetry import DOWN_CMD, Command, check_station, encode_command, topic

Publish = Callable[..., bool]


class CommandError(AirtraceError):
    """A command could not be handed to the broker."""

    retryable = True


class Commander:
    def __init__(
        self,
        store: Store,
        publish: Publish | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.publish = publish
        self.clock = clock

    def send(
        self,
        station: str,
        cmd: str,
        args: Mapping[str, Any] | None = None,
        *,
        expires_s: float | None = None,
    ) -> CommandRecord:
        """Record and publish a command (QoS 1, not retained); the ack updates the record."""
        check_station(station)
        now = self.clock()
        command = Command(
            id=f"c-{uuid.uuid4().hex[:20]}",
            cmd=cmd,
            args=dict(args or {}),
            ts=now,
            expires=None if expires_s is None else now + expires_s,
        )
        if self.publish is None:
            raise CommandError("commands need the MQTT connection: [mqtt] url and ingest on")
        rec = CommandRecord(command.id, station, cmd, dict(command.args), now)
        self.store.add_command(rec)
        if not self.publish(topic(station, DOWN_CMD), encode_command(command), qos=1):
            raise CommandError(f"the MQTT client refused command {command.id} for {station}")
        return rec
