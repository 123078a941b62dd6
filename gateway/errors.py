"""The gateway's errors, each carrying policy (``retryable``) and structured fields.

Library exceptions (pymodbus, pyserial, paho, sqlite3) are translated into these at the
adapter's edge, in one place each, so the supervisor decides on policy, not on types
from a library.
"""

from __future__ import annotations

from protocols.errors import AirtraceError


class DeviceError(AirtraceError):
    """A device did not give a usable answer (exception response, garbled frame, I/O)."""

    retryable = True


class DeviceTimeout(DeviceError):
    """A device did not answer within its timeout."""


class DeviceUnavailable(DeviceError):
    """The device's coordinator has backed it off after repeated failures."""


class UplinkError(AirtraceError):
    """The MQTT uplink failed (connect, auth, TLS, publish)."""

    retryable = True


class OutboxError(AirtraceError):
    """The durable outbox could not store or serve readings (disk full, corrupt file)."""

    retryable = True


class CommandRejected(AirtraceError):
    """A downlink command that is malformed, unknown, unauthorised or expired."""
