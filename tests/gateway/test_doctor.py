"""``gateway doctor``: every check a line, every failure with its fix, exit 1 on failure."""

from __future__ import annotations

import subprocess

from gateway.doctor import doctor


def run(cfg) -> tuple[int, str]:
    got: list[str] = []
    code = doctor(cfg.path, out=got.append)
    return code, "\n".join(got)


def test_a_healthy_station_passes(make_config, devices, broker) -> None:
    cfg = make_config(mqtt=broker.url, sensors=devices.sensors())
    code, text = run(cfg)
    assert code == 0, text
    for name in ("config", "device pm", "device met", "broker", "clock", "disk", "outbox",
                 "calibration"):  # fmt: skip
        assert any(line.startswith(("PASS", "WARN")) and f"  {name}" in line
                   for line in text.splitlines()), (name, text)  # fmt: skip
    assert "pm25 35 ug/m3" in text and "rh 65.8 %RH" in text
    assert text.splitlines()[-1].endswith("checks passed")


def test_failures_name_the_fix(make_config, devices) -> None:
    devices.sim.silence(3)
    cfg = make_config(sensors=devices.sensors(timeout_s=0.1))  # broker at port 1: nobody
    code, text = run(cfg)
    assert code == 1
    lines = text.splitlines()
    pm = next(i for i, line in enumerate(lines) if "device pm" in line)
    assert (
        lines[pm].startswith("FAIL") and "fix: check the device is on the network" in lines[pm + 1]
    )
    broker_line = next(i for i, line in enumerate(lines) if "  broker" in line)
    assert lines[broker_line].startswith("FAIL") and "cannot reach" in lines[broker_line]
    assert "fix:" in lines[broker_line + 1]
    assert "2 failed" in lines[-1]


def test_refused_credentials(make_config, devices, broker, cli) -> None:
    pw = broker.workdir / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "gw", "right"], check=True)
    broker.stop()
    broker.extra_conf = f"user root\nallow_anonymous false\npassword_file {pw}"
    broker.start()
    cfg = make_config(mqtt=broker.url, uplink='username = "gw"\npassword = "wrong"',
                      sensors=devices.sensors())  # fmt: skip
    r = cli("gateway", "doctor", "--config", str(cfg.path), "--no-devices")
    assert r.code == 1
    assert "refused" in r.stdout and "check [uplink] username and password" in r.stdout


def test_a_broken_config_is_the_first_failure(tmp_path, cli) -> None:
    bad = tmp_path / "s.toml"
    bad.write_text("[station]\n")
    r = cli("gateway", "doctor", "--config", str(bad))
    assert r.code == 1 and r.stdout.startswith("FAIL  config")
