"""What the daemon and the station tools share: the seam to the device poller (its
Protocol and the factory that makes the real one), the MQTT link's Protocol, the software
version, and the daemon's state file beside the outbox."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, is_dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

from gateway.clock import Clock
from gateway.config import ActuatorConfig, StationConfig
from gateway.model import Sample
from gateway.mqtt import MqttSettings


def software_version() -> str:
    try:
        return version("airtrace")
    except PackageNotFoundError:
        return "0+unknown"


class Poller(Protocol):
    """What the daemon needs of ``gateway.poller.Poller`` (the seam in GATEWAY.md)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def poll_once(self) -> list[Sample]: ...
    def set_interval(
        self, sensor: str | None, interval_s: float, duration_s: float | None
    ) -> None: ...
    def write(self, actuator: ActuatorConfig, value: int) -> None: ...
    def health(self) -> Mapping[str, Any]: ...


class Link(Protocol):
    @property
    def connected(self) -> bool: ...

    reconnects: int

    def start(self) -> None: ...
    def stop(self, timeout: float = 5.0) -> None: ...
    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> Any: ...


PollerFactory = Callable[[StationConfig, Clock, Callable[[list[Sample]], None]], Poller]
LinkFactory = Callable[[MqttSettings, Callable[[object], None]], Link]


def default_poller(
    config: StationConfig, clock: Clock, sink: Callable[[list[Sample]], None]
) -> Poller:
    from gateway.poller import Poller as DevicePoller

    return DevicePoller(config, clock=clock, sink=sink)


def state_path(config: StationConfig) -> Path:
    p = config.outbox.path
    return p.with_name(f"{p.stem}-state.json")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def plain(obj: Any) -> Any:
    if hasattr(obj, "to_json"):
        return obj.to_json()
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    return obj
