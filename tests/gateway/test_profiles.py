"""Device profiles: every shipped profile loads; every mistake in one is one clear line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway import config
from gateway.profiles import (
    BUILTIN_DIR,
    builtin_profiles,
    load_profile,
    loads_profile,
    transports_for,
)
from protocols.errors import ConfigError
from protocols.quantities import QUANTITIES
from protocols.registers import decode

REQUIRED = {
    "rs-pm-n01", "rs-ws-n01", "rs-fs-n01", "rs-fx-n01", "gas-f32-le", "rs-zs-n01",
    "louver-box", "pms5003", "sds011", "hj212-dust", "sensorbee-gas", "deltaohm-pmsense",
}  # fmt: skip


def test_the_seam_names_are_all_shipped() -> None:
    assert set(builtin_profiles()) >= REQUIRED


@pytest.mark.parametrize("name", builtin_profiles())
def test_every_shipped_profile_loads(name: str) -> None:
    p = load_profile(name)
    assert p.name == name and p.builtin
    assert p.quantities and len(set(p.quantities)) == len(p.quantities)
    for q in p.quantities:
        assert p.unit(q) == QUANTITIES[q].unit
    if p.protocol == "modbus":
        blocks = p.blocks()
        covered = [s for b in blocks for s in b.specs]
        assert sorted(covered, key=id) == sorted(p.registers, key=id)
    # the same file loads by path as by name
    assert load_profile(str(BUILTIN_DIR / f"{name}.toml")) == p


def test_rs_ws_n01_decodes_the_reference_vectors_m1_m2() -> None:
    # 01 03 04 02 92 FF 9B 5A 3D: humidity 0x0292 = 65.8 %RH, temperature 0xFF9B = -10.1 degC
    p = load_profile("rs-ws-n01")
    (block,) = p.blocks()
    assert (block.function, block.address, block.count) == (3, 0, 2)
    words = [0x0292, 0xFF9B]
    got = {s.quantity: decode(block.extract(words, s), s) for s in block.specs}
    assert got == pytest.approx({"rh": 65.8, "temp": -10.1})


def test_louver_box_is_read_in_one_request() -> None:
    (block,) = load_profile("louver-box").blocks()
    assert (block.function, block.address, block.count) == (3, 0x01F4, 6)


def test_gas_module_is_little_word_order_float32_input_registers() -> None:
    p = load_profile("gas-f32-le")
    assert {(s.function, s.type, s.word_order) for s in p.registers} == {(4, "float32", "little")}
    assert p.quantities == ("no2", "so2", "co", "o3")


def test_serial_and_hj212_profiles_map_fields() -> None:
    assert [(f.quantity, f.field) for f in load_profile("sds011").fields] == [
        ("pm25", "pm25"),
        ("pm10", "pm10"),
    ]
    dust = {f.field: f for f in load_profile("hj212-dust").fields}
    assert dust["a34004"].quantity == "pm25" and dust["a34002"].quantity == "pm10"
    assert dust["a01006"].value(101.3) == pytest.approx(1013.0)  # kPa -> hPa


def test_transports_per_protocol() -> None:
    assert transports_for("modbus") == ("modbus-tcp", "modbus-rtu")
    assert transports_for("pms5003") == ("serial",)
    assert transports_for("hj212") == ("hj212-tcp",)


GOOD = """
[model]
name = "my-th"
protocol = "modbus"

[defaults]
unit_id = 3
baudrate = 9600

[[register]]
quantity = "temp"
address = 10
type = "int16"
scale = 0.1
unit = "Cel"

[[register]]
quantity = "rh"
address = 11
scale = 0.1
"""


def test_a_technicians_own_profile(tmp_path: Path) -> None:
    path = tmp_path / "my-th.toml"
    path.write_text(GOOD)
    p = load_profile(str(path))
    assert p.name == "my-th" and not p.builtin and p.path == str(path)
    assert p.defaults.unit_id == 3 and p.defaults.baudrate == 9600
    assert p.unit("rh") == "%RH"  # the quantity's unit when the profile gives none
    (block,) = p.blocks()
    assert (block.address, block.count) == (10, 2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("protocol = \"modbus\"", "protocol = \"bacnet\""), r"\[model\] protocol: must be one of"),
        (("name = \"my-th\"", "name = \"My TH\""), r"\[model\] name: has a bad value"),
        (("quantity = \"temp\"", "quantity = \"temperature\""),
         r"\[register #1\] quantity: unknown quantity 'temperature' \(did you mean 'temp'\?\)"),
        (("unit = \"Cel\"", "unit = \"degF\""),
         r"\[register #1\] unit: temp is reported in Cel, not 'degF'"),
        (("type = \"int16\"", "type = \"int64\""), r"\[register #1\] type: must be one of"),
        (("address = 10", "address = -1"), r"\[register #1\] address: must be >= 0"),
        (("address = 10", "adress = 10"), r"\[register #1\]: unknown key \"adress\""),
        (("scale = 0.1\nunit", "scale = 0.0\nunit"), r"\[register #1\] scale: .*must not be zero"),
        (("quantity = \"rh\"", "quantity = \"temp\""), r"quantity 'temp' is listed twice"),
        (("unit_id = 3", "unit_id = 300"), r"\[defaults\] unit_id: must be <= 247"),
        (("[[register]]\nquantity = \"rh\"", "[[field]]\nquantity = \"rh\""),
         r"field: a modbus profile describes \[\[register\]\]s"),
    ],
)  # fmt: skip
def test_profile_mistakes_are_one_clear_line(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    assert change[0] in GOOD
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError) as err:
        load_profile(str(path))
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(str(path))
    assert re.search(message, text), text


def test_serial_profile_mistakes(tmp_path: Path) -> None:
    text = '[model]\nname = "x"\nprotocol = "pms5003"\nvariant = "pms5003"\n'
    with pytest.raises(ConfigError, match=r"\[field\] is required|field: is required"):
        loads_profile(text, source="x.toml")
    with pytest.raises(ConfigError, match=r"a pms5003 frame has no 'temp'"):
        loads_profile(text + '[[field]]\nquantity = "temp"\nfield = "temp"\n', source="x.toml")
    # the T variant carries temperature
    p = loads_profile(
        text.replace('variant = "pms5003"', 'variant = "pms5003t"')
        + '[[field]]\nquantity = "temp"\nfield = "temp"\n',
        source="x.toml",
    )
    assert p.variant == "pms5003t"
    hj = (
        '[model]\nname = "h"\nprotocol = "hj212"\n[[field]]\nquantity = "pm10"\nfield = "a34-002"\n'
    )
    with pytest.raises(ConfigError, match="factor code"):
        loads_profile(hj, source="h.toml")


def test_unknown_builtin_and_missing_file() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown profile 'rs-pm-n02' \(did you mean 'rs-pm-n01'\?\)"
    ):
        load_profile("rs-pm-n02")
    with pytest.raises(ConfigError, match="no such profile file"):
        load_profile("/nonexistent/profile.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        loads_profile("[model", source="t.toml")


STATION = """
[station]
id = "GX-M-001"
kind = "micro"
lat = 34.8
lon = 113.5
inlet_height_m = 3.5

[[sensor]]
name = "pm"
profile = "{profile}"
transport = "{transport}"
address = "{address}"
"""


def _station(tmp_path: Path, **kw: str) -> Path:
    values = {"profile": "rs-pm-n01", "transport": "modbus-tcp", "address": "127.0.0.1:5020"}
    values.update(kw)
    path = tmp_path / "station.toml"
    path.write_text(STATION.format(**values))
    return path


def test_config_load_checks_profiles(tmp_path: Path) -> None:
    assert config.load(_station(tmp_path)).sensors[0].profile == "rs-pm-n01"
    with pytest.raises(ConfigError) as err:
        config.load(_station(tmp_path, profile="rs-pm-n99"))
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith(f"{tmp_path / 'station.toml'} [sensor #1] profile: unknown profile")


def test_config_load_names_a_broken_profile_file(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(GOOD.replace('type = "int16"', 'type = "int12"'))
    with pytest.raises(ConfigError) as err:
        config.load(_station(tmp_path, profile="mine.toml"))
    line = str(err.value)
    assert "[sensor #1] profile:" in line and str(tmp_path / "mine.toml") in line
    assert "[register #1] type" in line


def test_config_load_checks_the_transport_fits_the_protocol(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"transport: profile 'sds011' speaks sds011, which needs transport serial",
    ):
        config.load(_station(tmp_path, profile="sds011"))
    cfg = config.load(
        _station(tmp_path, profile="sds011", transport="serial", address="/dev/ttyUSB0")
    )
    assert cfg.sensors[0].transport == "serial"
