"""The edge gateway: read sensors, calibrate, quality-flag, keep durably, publish, obey.

Data flows ``driver.read() -> calibrate -> qc -> outbox.add -> uplink.send``.
Never imports ``cloud``.
"""
