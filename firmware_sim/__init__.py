"""Simulated devices that speak the real protocols, and the synthetic world they measure.

Devices (each on real transports, each reading a value source, each with faults on demand):
``modbus`` (pymodbus servers over TCP or RTU on a pty; units in ``modbus_unit``, register
maps in ``models``), ``pms5003_sensor`` and ``sds011_sensor`` (serial writers on a pty,
on the common ``serial_sensor``), ``hj212_monitor`` (an HJ 212-2017 dust monitor, a TCP
client). Shared parts: ``clock``, ``sources``, ``faults``, ``loop`` (one event loop thread
for all), ``ptypair`` and ``serial_port``. A district: ``city`` with ``city_config``,
``station_config`` and ``world_view`` over the synthetic world (``world`` and its helpers,
``truth``).
``cli`` is ``airtrace sim``.

Imports only ``protocols``.
"""
