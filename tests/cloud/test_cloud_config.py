"""The cloud config (DESIGN 4.5): the contract keys work, everything else is checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.config import load_config, parse_config
from protocols.errors import ConfigError

MINIMAL = """
[mqtt]
url = "mqtt://127.0.0.1:1883"
[store]
url = "sqlite:///var/lib/airtrace/cloud.db"
[api]
listen = "127.0.0.1:8080"
"""


def test_the_design_example_works_with_defaults() -> None:
    cfg = parse_config(MINIMAL)
    assert cfg.mqtt is not None
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("127.0.0.1", 1883, False)
    assert cfg.mqtt.up_filter == "airtrace/v1/+/up/#"
    assert cfg.store.url == "sqlite:///var/lib/airtrace/cloud.db"
    assert (cfg.api.enabled, cfg.api.host, cfg.api.port) == (True, "127.0.0.1", 8080)
    assert (cfg.ingest.enabled, cfg.fusion.enabled, cfg.hj212.enabled) == (True, True, False)
    assert (cfg.inversion_enabled, cfg.alerts_enabled) == (False, False)


def test_every_part_is_switchable_and_the_extra_keys_are_read(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "tokens").write_text("# operators\n" + "t" * 20 + "\n")
    cfg = parse_config(f"""
[mqtt]
url = "mqtt://cloud:pass@broker.example:1884"
client_id = "cloud-a"
share_group = "ingest"
username = "cloud"
password_file = "{tmp_path}/pw"
session_expiry_s = 3600
receive_max = 100
[store]
url = "postgresql://airtrace@db/airtrace"
[ingest]
watermark_interval_s = 1.0
[api]
listen = "0.0.0.0:9000"
token_file = "{tmp_path}/tokens"
[hj212]
listen = "0.0.0.0:9212"
units = "ug/m3"
[domain]
origin_lat = 34.8
origin_lon = 113.5
cell_m = 100
extent = [0, 0, 5000, 4000]
[fusion]
enabled = false
[inversion]
enabled = true
cell_m = 50
[alerts]
rules = "alerts.toml"
""")
    assert cfg.mqtt is not None
    assert cfg.mqtt.up_filter == "$share/ingest/airtrace/v1/+/up/#"
    assert (cfg.mqtt.username, cfg.mqtt.password, cfg.mqtt.port) == ("cloud", "s3cret", 1884)
    assert cfg.api.tokens == ("t" * 20,)
    assert (cfg.hj212.enabled, cfg.hj212.port, cfg.hj212.units) == (True, 9212, "ug/m3")
    assert cfg.domain.extent == (0.0, 0.0, 5000.0, 4000.0)
    assert (cfg.fusion.enabled, cfg.inversion_enabled, cfg.alerts_enabled) == (False, True, True)
    t = cfg.part_table("alerts")
    assert t.text("rules") == "alerts.toml"
    t.done()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[store]\nurl = 'x.db'\n", "[mqtt] url is required"),
        ("[mqtt]\nurl = 'mqtt://h'\n", "[store] is required"),
        (MINIMAL + "[bogus]\n", "unknown section [bogus]"),
        (MINIMAL.replace('listen = "127.0.0.1:8080"', 'lisen = "x"'), 'did you mean "listen"'),
        (MINIMAL.replace("mqtt://127.0.0.1:1883", "http://h"), "mqtt:// or mqtts://"),
        (MINIMAL.replace("sqlite:///var", "mysql://var"), "unknown store url scheme"),
        (MINIMAL.replace("127.0.0.1:8080", "0.0.0.0:8080"), "not a loopback address"),
        (MINIMAL.replace("127.0.0.1:8080", "8080"), "HOST:PORT"),
        (MINIMAL + "[domain]\norigin_lat = 34.0\n", "go together"),
        (MINIMAL + "[hj212]\nunits = 'g/m3'\n", "must be one of"),
        (MINIMAL + "[api]\n", "not valid TOML"),
        (MINIMAL.replace('[mqtt]\n', '[mqtt]\nprotocol = "3"\n'), "must be one of 5, 3.1.1"),
        (MINIMAL.replace('[mqtt]\n', '[mqtt]\nprotocol = "3.1.1"\nshare_group = "g"\n'),
         'shared subscriptions need protocol = "5"'),
    ],
)
def test_bad_configs_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        parse_config(text, source="c.toml")
    assert says in str(err.value)
    assert str(err.value).startswith("c.toml")


def test_ingest_off_needs_no_broker(tmp_path: Path) -> None:
    cfg = parse_config("[store]\nurl = 'x.db'\n[ingest]\nenabled = false\n")
    assert cfg.mqtt is None


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_the_demo_clock_is_shared_through_the_environment() -> None:
    import time

    from cloud.clock import clock_from_env

    anchor = time.time()
    now = clock_from_env({"AIRTRACE_CLOCK": f"1000000@360@{anchor}"})()
    assert 1_000_000.0 <= now < 1_000_000.0 + 360 * 5
    assert clock_from_env({}) is time.time
    with pytest.raises(ConfigError, match="START@RATE@ANCHOR"):
        clock_from_env({"AIRTRACE_CLOCK": "soon"})
