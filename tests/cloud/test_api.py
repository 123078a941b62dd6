"""The HTTP API through httpx's ASGI transport (starlette's ApiClient warns about httpx)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.api import ApiContext, create_app
from cloud.commands import Commander
from cloud.config import DomainConfig
from cloud.fusion import Fusion
from cloud.registry import Registry
from cloud.store import Store, open_store
from cloud.store.types import Batch, Health, PackRows, Quarantined
from tests.cloud.conftest import T0, make_pack

TOKEN = "operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOMAIN = DomainConfig(origin_lat=34.8, origin_lon=113.5)


class ApiClient:
    """A synchronous face on ``httpx.AsyncClient(transport=ASGITransport(app))``."""

    def __init__(self, app: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        )

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.client.request(method, url, **kw))

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def put(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def delete(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", url, **kw)

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/a.db") as s:
        yield s


@pytest.fixture
def sent() -> list[tuple[str, bytes]]:
    return []


@pytest.fixture
def client(store: Store, sent: list[tuple[str, bytes]]) -> Iterator[ApiClient]:
    ctx = ApiContext(
        store=store,
        registry=Registry(store, DOMAIN),
        fusion=Fusion(store, domain=DOMAIN),
        tokens=(TOKEN,),
        commander=Commander(
            store, lambda t, p, **kw: sent.append((t, p)) or True, clock=lambda: T0
        ),
        stats=lambda: {"messages": 3},
        clock=lambda: T0,
    )
    c = ApiClient(create_app(ctx))
    try:
        yield c
    finally:
        c.close()


def test_token_auth_and_the_open_health_check(client: ApiClient) -> None:
    assert client.get("/api/v1/health").json()["ok"] is True
    assert client.get("/api/v1/stations").status_code == 401
    bad = {"Authorization": "Bearer wrong-token-0000000000"}
    assert client.get("/api/v1/stations", headers=bad).status_code == 401
    assert client.get("/api/v1/stations", headers=AUTH).json() == []
    assert client.get("/api/v1/stats", headers=AUTH).json()["ingest"] == {"messages": 3}


def test_openapi_is_served_under_the_prefix(client: ApiClient) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    paths = set(doc["paths"])
    assert {"/api/v1/stations", "/api/v1/gaps", "/api/v1/quarantine", "/api/v1/sites"} <= paths
    assert all(p.startswith("/api/v1/") for p in paths)
    assert client.get("/api/v1/docs").status_code == 200


def test_station_registry_crud_and_health(client: ApiClient, store: Store) -> None:
    r = client.put(
        "/api/v1/stations/R1",
        headers=AUTH,
        json={"kind": "reference", "lat": 34.81, "lon": 113.5, "hj212_mn": "MN1", "hj212_pw": "pw"},
    )
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["x_m"] == pytest.approx(0.0, abs=0.01)
    assert view["y_m"] == pytest.approx(1111.95, abs=0.1)
    assert "hj212_pw" not in view and view["hj212_pw_set"] is True
    store.commit(Batch(packs=[PackRows.from_pack(make_pack("NEW", [1, 2]))], received=T0))
    store.put_health([Health("R1", "stale", ("no data for 20 min",), T0)])
    got = {s["id"]: s for s in client.get("/api/v1/stations", headers=AUTH).json()}
    assert got["R1"]["health"]["status"] == "stale"
    assert got["NEW"]["status"] == "pending"
    assert client.get("/api/v1/stations?status=pending", headers=AUTH).json()[0]["id"] == "NEW"
    assert client.post("/api/v1/stations/NEW/confirm", headers=AUTH).json()["status"] == "confirmed"
    assert client.post("/api/v1/stations/NOPE/confirm", headers=AUTH).status_code == 404
    one = client.get("/api/v1/stations/NEW", headers=AUTH).json()
    assert one["custody"][0]["stored"] == 2
    assert one["streams"][0]["quantity"] == "pm25"
    assert client.put("/api/v1/stations/R2", headers=AUTH, json={"lat": 95}).status_code == 422
    assert (
        client.put("/api/v1/stations/R2", headers=AUTH, json={"hj212_mn": "MN1"}).status_code == 400
    )
    assert client.delete("/api/v1/stations/NEW", headers=AUTH).status_code == 204
    assert client.get("/api/v1/stations/NEW", headers=AUTH).status_code == 404


def test_readings_means_gaps_and_quarantine(client: ApiClient, store: Store) -> None:
    store.commit(Batch(packs=[PackRows.from_pack(make_pack("S", [1, 2, 5], floor=4))], received=T0))
    store.advance_custody("S", "e1", T0)
    store.commit(
        Batch(
            quarantine=[
                Quarantined(
                    T0, "mqtt", "airtrace/v1/S/up/telemetry", "bad", "telemetry", b"{x", 2, "S"
                )
            ]
        )
    )
    latest = client.get("/api/v1/stations/S/readings?quantity=pm25&limit=2", headers=AUTH).json()
    assert [r["id"] for r in latest] == [5, 2]
    ranged = client.get(
        "/api/v1/stations/S/readings",
        params={"since": "2026-05-28T20:26:55Z", "until": "2026-05-28T20:27:25Z"},
        headers=AUTH,
    ).json()
    assert [r["id"] for r in ranged] == [2]
    means = client.get(
        "/api/v1/stations/S/means",
        params={
            "quantity": "pm25",
            "since": "2026-05-28T20:00:00Z",
            "until": "2026-05-28T21:00:00Z",
            "period": "5min",
        },
        headers=AUTH,
    ).json()
    assert means and means[0]["n"] >= 1
    assert client.get("/api/v1/stations/S/readings?since=soon", headers=AUTH).status_code == 422
    gaps = client.get("/api/v1/gaps", headers=AUTH).json()
    assert [(g["first_id"], g["last_id"], g["missing"]) for g in gaps] == [(3, 3, 1)]
    q = client.get("/api/v1/quarantine", headers=AUTH).json()
    assert q["counts"] == {"telemetry": 1}
    assert q["entries"][0]["payload"] == "{x"


def test_sites_with_persons_and_areas(client: ApiClient) -> None:
    body = {
        "kind": "construction",
        "name": "Block 7",
        "lat": 34.8,
        "lon": 113.51,
        "h_m": 2,
        "persons": [{"name": "Li", "phone": "+86 1"}],
    }
    assert client.put("/api/v1/sites/S1", headers=AUTH, json=body).status_code == 200
    site = client.get("/api/v1/sites/S1", headers=AUTH).json()
    assert site["persons"][0]["name"] == "Li"
    assert site["x_m"] > 900
    assert client.put("/api/v1/sites/S2", headers=AUTH, json={"kind": "volcano"}).status_code == 422
    area = {
        "kind": "grid",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[113.5, 34.8], [113.51, 34.8], [113.51, 34.81], [113.5, 34.8]]],
        },
    }
    assert client.put("/api/v1/areas/C1", headers=AUTH, json=area).status_code == 200
    assert [a["id"] for a in client.get("/api/v1/areas", headers=AUTH).json()] == ["C1"]
    assert client.delete("/api/v1/sites/S1", headers=AUTH).status_code == 204


def test_commands_are_recorded_and_published(
    client: ApiClient, sent: list[tuple[str, bytes]]
) -> None:
    client.put("/api/v1/stations/GX-1", headers=AUTH, json={"kind": "dust"})
    r = client.post(
        "/api/v1/stations/GX-1/commands",
        headers=AUTH,
        json={"cmd": "actuate", "args": {"coil": 1, "on": True}, "expires_s": 60},
    )
    assert r.status_code == 202, r.text
    cid = r.json()["id"]
    topic, payload = sent[0]
    assert topic == "airtrace/v1/GX-1/down/cmd"
    assert json.loads(payload) == {
        "id": cid,
        "cmd": "actuate",
        "args": {"coil": 1, "on": True},
        "ts": T0,
        "expires": T0 + 60,
    }
    assert client.get("/api/v1/commands?station=GX-1", headers=AUTH).json()[0]["status"] == "sent"
    assert (
        client.post(
            "/api/v1/stations/GX-1/commands", headers=AUTH, json={"cmd": "explode"}
        ).status_code
        == 422
    )
