"""The station config of DESIGN 4.6 loads; every mistake is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import config
from protocols.errors import ConfigError

DESIGN_EXAMPLE = """
[station]
id = "GX-M-001"
kind = "micro"               # reference | micro | dust | met
lat = 34.8123
lon = 113.5521
inlet_height_m = 3.5

[uplink]
mqtt = "mqtt://127.0.0.1:1883"   # mqtts:// for TLS; credentials and CA as further keys

[outbox]
path = "/var/lib/airtrace/outbox.db"

[[sensor]]
name = "pm"
profile = "rs-pm-n01"        # built-in name or path to a profile file
transport = "modbus-tcp"     # modbus-tcp | modbus-rtu | serial
address = "127.0.0.1:5020"   # host:port for TCP, device path (/dev/ttyUSB0) for RTU and serial
unit_id = 1
baudrate = 9600
interval_s = 10
"""


def test_the_design_example_loads() -> None:
    cfg = config.loads(DESIGN_EXAMPLE)
    assert cfg.station.id == "GX-M-001" and cfg.station.kind == "micro"
    assert cfg.station.inlet_height_m == 3.5
    assert cfg.uplink.host == "127.0.0.1" and cfg.uplink.port == 1883 and not cfg.uplink.tls
    assert cfg.outbox.path == Path("/var/lib/airtrace/outbox.db")
    (pm,) = cfg.sensors
    assert (pm.name, pm.profile, pm.transport, pm.address, pm.unit_id) == (
        "pm",
        "rs-pm-n01",
        "modbus-tcp",
        "127.0.0.1:5020",
        1,
    )
    assert pm.interval_s == 10.0 and pm.bus == "modbus-tcp:127.0.0.1:5020"


def test_full_config_with_actuator_rule_qc_and_tls(tmp_path: Path) -> None:
    text = (
        DESIGN_EXAMPLE.replace("mqtt://127.0.0.1:1883", "mqtts://broker.example:8883")
        + """
[qc.pm10]
max = 2000
spike_per_min = 300

[[actuator]]
name = "spray"
transport = "modbus-tcp"
address = "127.0.0.1:5020"
coil = 0
max_on_s = 900

[[rule]]
name = "spray-on-dust"
quantity = "pm10"
above = 150
for_s = 300
actuator = "spray"
hold_s = 600

[metrics]
listen = "127.0.0.1:9108"
"""
    )
    p = tmp_path / "station.toml"
    p.write_text(text)
    cfg = config.load(p)
    assert cfg.uplink.tls and cfg.uplink.port == 8883
    assert cfg.qc["pm10"].max == 2000
    assert cfg.actuator("spray").coil == 0
    assert cfg.rules[0].actuator == "spray"
    assert cfg.metrics_listen == "127.0.0.1:9108"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("interval_s = 10", "interval_s = 0"), "[sensor #1] interval_s: must be >= 0.05"),
        (('kind = "micro"', 'kind = "huge"'), "[station] kind: must be one of reference"),
        (
            ("unit_id = 1", "unit_id = 1\nunitid = 2"),
            'unknown key "unitid" (did you mean "unit_id"?)',
        ),
        (('address = "127.0.0.1:5020"', 'address = "localhost"'), "must be host:port"),
        (('transport = "modbus-tcp"', 'transport = "carrier-pigeon"'), "transport: must be one of"),
        (('id = "GX-M-001"', 'id = "GX/M"'), "[station] id: bad station id"),
        (('mqtt = "mqtt://127.0.0.1:1883"', 'mqtt = "http://x"'), "[uplink] mqtt: must be mqtt://"),
        (("lat = 34.8123", "lat = 134.8"), "[station] lat: must be <= 90.0"),
        (("[station]", "[statoin]"), "station.toml: [station] is required"),
    ],
)
def test_mistakes_give_one_clear_line(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.loads(DESIGN_EXAMPLE.replace(*change))
    text = str(info.value)
    assert message in text and "\n" not in text


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        config.load(tmp_path / "nope.toml")


def test_rule_must_name_an_actuator() -> None:
    text = (
        DESIGN_EXAMPLE + '\n[[rule]]\nname = "r"\nquantity = "pm10"\nabove = 1\nactuator = "fog"\n'
    )
    with pytest.raises(ConfigError, match="no \\[\\[actuator\\]\\] named 'fog'"):
        config.loads(text)
