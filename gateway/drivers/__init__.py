"""Device drivers behind one small interface: ``read()`` is one poll, ``close()`` ends it.

One module per protocol (``modbus``, ``pms5003``, ``sds011``, ``hj212``); the device
model comes from its profile (``gateway.profiles``). ``open_driver`` picks the module::

    driver = open_driver(sensor, load_profile(sensor.profile), clock=SystemClock())
    samples = driver.read()     # [Sample]; raises DeviceError / DeviceTimeout
    driver.close()

``read()`` returns one ``Sample`` per quantity the device reported, stamped with
``clock.now()`` when the answer arrived; a quantity the device answered for but could
not measure comes back as a sample without a value, flagged. A device that did not
answer at all raises ``DeviceTimeout``; one that answered wrongly (exception response,
broken frame, port failure) raises ``DeviceError``. ``failure_flag`` turns either into
the HJ 212 flag its readings get: B (communication fault) or D (device fault).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from gateway.errors import DeviceError, DeviceTimeout
from gateway.model import Flag

if TYPE_CHECKING:
    from gateway.clock import Clock
    from gateway.config import SensorConfig
    from gateway.model import Sample
    from gateway.profiles import Profile

__all__ = ["Driver", "failure_flag", "open_driver"]


class Driver(Protocol):
    """What the poller needs of a device."""

    @property
    def name(self) -> str:
        """The ``[[sensor]]`` name."""
        ...

    def read(self) -> list[Sample]:
        """Poll the device once."""
        ...

    def close(self) -> None:
        """Release the port or socket (a Modbus driver on a shared link leaves it open)."""
        ...


def open_driver(
    sensor: SensorConfig,
    profile: Profile,
    *,
    clock: Clock,
    link: Any = None,
) -> Driver:
    """The driver for ``sensor`` speaking ``profile``'s protocol. Devices on one bus share
    one ``link`` (the poller passes it: a ``ModbusLink`` for Modbus, an ``Hj212Listener``
    for HJ 212); without one the driver opens its own.
    Serial ports and listening sockets are opened lazily, at the first ``read()``."""
    if profile.protocol == "modbus":
        from gateway.drivers.modbus import ModbusDriver

        return ModbusDriver(sensor, profile, clock=clock, link=link)
    if profile.protocol == "pms5003":
        from gateway.drivers.pms5003 import Pms5003Driver

        return Pms5003Driver(sensor, profile, clock=clock)
    if profile.protocol == "sds011":
        from gateway.drivers.sds011 import Sds011Driver

        return Sds011Driver(sensor, profile, clock=clock)
    if profile.protocol == "hj212":
        from gateway.drivers.hj212 import Hj212Driver

        return Hj212Driver(sensor, profile, clock=clock, listener=link)
    raise ValueError(f"no driver for protocol {profile.protocol!r}")


def failure_flag(exc: DeviceError) -> Flag:
    """B when the device could not be heard (timeout, port, connection, garbled line);
    D when it answered but reported a fault (exception response, error bits)."""
    if isinstance(exc, DeviceTimeout) or exc.fields.get("comm"):
        return Flag.COMM_FAULT
    return Flag.FAULT
