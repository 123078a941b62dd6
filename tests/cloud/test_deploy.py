"""The shipped broker config works as documented: TLS with our own CA, passwords, and the
per-gateway ACL — the central ingest takes a gateway's pack over TLS, and a gateway cannot
speak for another station."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from cloud.config import parse_config
from cloud.ingest import Ingest
from cloud.store import open_store
from tests.cloud.conftest import pack_bytes, wait_for
from tests.conftest import ROOT, free_port, wait_port

DEPLOY = ROOT / "deploy" / "mosquitto"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (
            shutil.which("mosquitto")
            and shutil.which("mosquitto_passwd")
            and shutil.which("openssl")
        ),
        reason="needs mosquitto, mosquitto_passwd and openssl",
    ),
]


@pytest.fixture
def secure_broker(tmp_path: Path):
    etc = tmp_path / "etc"
    subprocess.run(
        [str(DEPLOY / "make-certs.sh"), str(etc), "localhost", "127.0.0.1"],
        check=True,
        capture_output=True,
        env={**os.environ, "CA_BITS": "2048"},  # quicker to make than the default 3072
    )
    passwd = etc / "passwd"
    users = {"airtrace-cloud": "cloud-secret", "GW-1": "pw-1", "GW-2": "pw-2"}
    for i, (user, pw) in enumerate(users.items()):
        subprocess.run(
            ["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(passwd), user, pw],
            check=True,
        )
    shutil.copy(DEPLOY / "acl", etc / "acl")
    tls_port, local_port = free_port(), free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text()
    conf = conf.replace("/etc/mosquitto/airtrace", str(etc)).replace(
        "/var/lib/mosquitto/", f"{tmp_path}/"
    )
    conf = conf.replace("listener 8883", f"listener {tls_port} 127.0.0.1").replace(
        "listener 1883 ", f"listener {local_port} "
    )
    if os.geteuid() == 0:
        conf += "user root\n"  # tmp_path is private to root; the shipped file drops to mosquitto
    (tmp_path / "m.conf").write_text(conf + f"log_dest file {tmp_path}/mosquitto.log\n")
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(tmp_path / "m.conf")], stderr=subprocess.DEVNULL
    )
    try:
        wait_port("127.0.0.1", tls_port)
        yield tls_port, etc, users
    finally:
        proc.kill()
        proc.wait(10)


def gateway_client(port: int, ca: Path, user: str, pw: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gw-{user}", protocol=mqtt.MQTTv5)
    c.username_pw_set(user, pw)
    c.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    return c


def test_tls_passwords_and_the_per_gateway_acl(secure_broker, tmp_path: Path) -> None:
    port, etc, users = secure_broker
    cfg = parse_config(
        f'[mqtt]\nurl = "mqtts://localhost:{port}"\nclient_id = "cloud-1"\n'
        f'username = "airtrace-cloud"\npassword = "{users["airtrace-cloud"]}"\n'
        f'ca_file = "{etc}/ca.crt"\nshare_group = "ingest"\n'
        f'[store]\nurl = "sqlite:///{tmp_path}/c.db"\n[ingest]\nwatermark_interval_s = 0.05\n'
    )
    assert cfg.mqtt is not None
    with open_store(cfg.store.url) as store:
        ingest = Ingest(store, cfg.ingest, cfg.mqtt)
        ingest.start()
        try:
            assert ingest.wait_connected(20), ingest.client.refused
            gw = gateway_client(port, etc / "ca.crt", "GW-1", users["GW-1"])
            marks: list[bytes] = []
            refused: list[str] = []
            acked = threading.Event()
            gw.on_message = lambda c, u, m: marks.append(m.payload)
            gw.on_publish = lambda c, u, mid, rc, p: (
                refused.append(str(rc)) if rc.is_failure else None,
                acked.set(),
            )
            gw.connect("localhost", port)
            gw.subscribe("airtrace/v1/GW-1/down/#", qos=1)
            gw.loop_start()
            try:
                gw.publish("airtrace/v1/GW-1/up/telemetry", pack_bytes("GW-1", [1, 2]), qos=1)
                wait_for(
                    lambda: any(b'"upto":2' in m for m in marks), 20, "GW-1's watermark over TLS"
                )
                acked.clear()
                gw.publish("airtrace/v1/GW-2/up/telemetry", pack_bytes("GW-2", [1]), qos=1)
                wait_for(acked.is_set, 10, "the broker's answer to a spoofed pack")
                assert refused == ["Not authorized"]
                assert store.reading_count("GW-2") == 0
            finally:
                gw.disconnect()
                gw.loop_stop()
            anon = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id="anon", protocol=mqtt.MQTTv5
            )
            anon.tls_set(ca_certs=str(etc / "ca.crt"))
            answers: list[str] = []
            anon.on_connect = lambda c, u, f, rc, p: answers.append(str(rc))
            anon.connect("localhost", port)
            anon.loop_start()
            try:
                wait_for(lambda: answers, 10, "the broker's answer to an anonymous client")
            finally:
                anon.disconnect()
                anon.loop_stop()
            assert answers[0] in ("Not authorized", "Bad user name or password")
        finally:
            ingest.stop()
