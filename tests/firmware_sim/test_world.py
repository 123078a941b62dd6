"""The synthetic world: reproducible, hand-checkable, answering every quantity."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from firmware_sim.world import World, rows_to_csv
from firmware_sim.world_fields import FixedWind
from firmware_sim.world_sensors import KIND_QUANTITIES
from protocols.errors import InputError
from protocols.quantities import QUANTITIES

T0 = 1748822400  # 2025-06-02T00:00Z


def _hand_world(truth_model: str = "plume") -> World:
    stations = [
        {"id": "DOWN", "kind": "micro", "x_m": 1300.0, "y_m": 1000.0, "z_m": 4.0},
        {"id": "SIDE", "kind": "micro", "x_m": 1300.0, "y_m": 1050.0, "z_m": 4.0},
        {"id": "UP", "kind": "reference", "x_m": 700.0, "y_m": 1000.0, "z_m": 12.0},
        {"id": "MAST", "kind": "met", "x_m": 500.0, "y_m": 500.0, "z_m": 10.0},
    ]
    sources = [{"x_m": 1000.0, "y_m": 1000.0, "h_m": 2.0, "rate_g_s": 1.5, "variability": 0.0}]
    return World.generate(
        7, domain=(0.0, 0.0, 3000.0, 3000.0), stations=stations, sources=sources,
        fixed_wind=FixedWind(3.0, 270.0, "D", 1000.0), background_ug_m3=0.0,
        gradient_ug_m3_per_km=0.0, local_ug_m3=0.0, truth_model=truth_model, start=T0)


def _by_hand(x: float, y: float, z: float, h: float, q: float, u: float) -> float:
    """Briggs urban D plume with ground reflection, written out in full."""
    sy = 0.16 * x / math.sqrt(1 + 0.0004 * x)
    sz = 0.14 * x / math.sqrt(1 + 0.0003 * x)
    vertical = math.exp(-((z - h) ** 2) / (2 * sz**2)) + math.exp(-((z + h) ** 2) / (2 * sz**2))
    return q * 1e6 / (2 * math.pi * u * sy * sz) * math.exp(-(y**2) / (2 * sy**2)) * vertical


def test_concentration_matches_a_hand_calculation() -> None:
    w = _hand_world()
    t = T0 + 5 * 3600 + 17
    # west wind: the plume runs east, DOWN is 300 m downwind on the axis, SIDE 50 m off it
    assert w.concentration("DOWN", "pm10", t) == pytest.approx(
        _by_hand(300.0, 0.0, 4.0, 2.0, 1.5, 3.0), rel=1e-9)
    assert w.concentration("SIDE", "pm10", t) == pytest.approx(
        _by_hand(300.0, 50.0, 4.0, 2.0, 1.5, 3.0), rel=1e-9)
    assert w.concentration("UP", "pm10", t) == 0.0
    # the same by pencil: sy = 48 / sqrt(1.12) = 45.355 m, sz = 42 / sqrt(1.09) = 40.229 m,
    # 1.5e6 / (2 pi 3 sy sz) = 43.614, vertical 0.99876 + 0.98894 -> 86.69 ug/m3
    assert w.concentration("DOWN", "pm10", t) == pytest.approx(86.69, abs=0.01)


def test_integrated_puffs_give_back_the_plume_in_a_steady_wind() -> None:
    plume_world, puff_world = _hand_world("plume"), _hand_world("puff")
    t = T0 + 3 * 3600
    for sid in ("DOWN", "SIDE"):
        a = plume_world.concentration(sid, "pm10", t)
        b = puff_world.concentration(sid, "pm10", t)
        assert b == pytest.approx(a, rel=0.03), sid


def _digest(w: World) -> str:
    text = rows_to_csv(w.hourly_obs(6)) + rows_to_csv(w.hourly_met(6))
    text += rows_to_csv(w.hourly_obs(2, "pm25", fused=False)) + rows_to_csv(w.sites_csv_rows())
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_seeded_world_is_reproducible_byte_for_byte() -> None:
    a = World.generate(11, n_stations=30, n_sources=2)
    b = World.generate(11, n_stations=30, n_sources=2)
    assert _digest(a) == _digest(b)
    assert _digest(World.generate(12, n_stations=30, n_sources=2)) != _digest(a)


def test_sensor_values_do_not_depend_on_call_order() -> None:
    asks = [(s, q, T0 + 60 * k + 7) for k in range(5) for s in ("GX-M-001", "GX-R-001")
            for q in ("pm10", "temp", "wind_dir")]
    a = World.generate(3, n_stations=20)
    first = [a.sensor_value(*x) for x in asks if x[0] in {s.id for s in a.stations}]
    b = World.generate(3, n_stations=20)
    second = [b.sensor_value(*x) for x in reversed(asks) if x[0] in {s.id for s in b.stations}]
    assert first == list(reversed(second))


def test_every_station_answers_its_quantities_within_bounds() -> None:
    w = World.generate(5, n_stations=40, n_sources=3,
                       source_kinds=("construction", "industrial", "restaurant"))
    kinds = {s.kind for s in w.stations}
    assert kinds == {"reference", "micro", "dust", "met"}
    for st in w.stations:
        assert w.quantities(st.id) == KIND_QUANTITIES[st.kind]
        for q in w.quantities(st.id):
            for t in (T0 + 1800, T0 + 13 * 3600 + 5):
                v = w.sensor_value(st.id, q, t)
                assert math.isfinite(v)
                assert QUANTITIES[q].low <= v <= QUANTITIES[q].high, (st.id, q, v)
    # and the truth answers every quantity of the vocabulary, at any station
    for q in QUANTITIES:
        assert math.isfinite(w.concentration(w.stations[0].id, q, T0 + 600))


def test_optical_pm_reads_high_in_humid_air_and_reference_does_not() -> None:
    w = World.generate(8, n_stations=40)
    micro = next(s.id for s in w.stations if s.kind == "micro")
    ts = [T0 + 3600 * h for h in range(48)]
    rh = np.array([w.concentration(micro, "rh", t) for t in ts])
    ratio = np.array([w.sensor_value(micro, "pm25", t) / w.concentration(micro, "pm25", t)
                      for t in ts])
    assert np.corrcoef(rh, ratio)[0, 1] > 0.5


def test_geometry_round_trip_and_scale() -> None:
    w = World.generate(1, n_stations=16)
    lat, lon = w.to_lat_lon(1234.5, -678.9)
    x, y = w.from_lat_lon(lat, lon)
    assert (x, y) == pytest.approx((1234.5, -678.9), abs=1e-6)
    lat1, _ = w.to_lat_lon(0.0, 1000.0)
    assert (lat1 - 34.8) * 111_195 == pytest.approx(1000.0, rel=1e-4)  # protocols.geo sphere
    st = w.stations[0]
    assert w.to_lat_lon(st.x_m, st.y_m) == pytest.approx((st.lat, st.lon))


def test_hourly_files_have_the_contract_shape() -> None:
    w = World.generate(2, n_stations=25, n_sources=1)
    obs = w.hourly_obs(3)
    assert list(obs[0]) == ["time", "station", "x_m", "y_m", "z_m", "value", "sigma"]
    assert {r["time"] for r in obs} == {"2025-06-02T00:00:00Z", "2025-06-02T01:00:00Z",
                                        "2025-06-02T02:00:00Z"}
    measuring = {s.id for s in w.stations if "pm10" in KIND_QUANTITIES[s.kind]}
    assert {r["station"] for r in obs} == measuring
    met = w.hourly_met(3)
    assert list(met[0])[:3] == ["time", "wind_speed_ms", "wind_dir_deg"]
    assert all(0 <= float(m["wind_dir_deg"]) < 360 for m in met)  # type: ignore[arg-type]
    truth = w.truth(3)
    assert len(truth) == 1
    assert truth[0].rate_g_s > 0
    sites = w.sites_csv_rows()
    assert sites
    assert set(sites[0]) == {"site", "x_m", "y_m", "h_m", "kind"}


def test_met_follows_a_turning_wind_with_meander() -> None:
    w = World.generate(4, n_stations=16)
    dirs = [w.met(T0 + 3600 * h).wind_dir_deg for h in range(24)]
    spread = max(abs(((d - dirs[0] + 180) % 360) - 180) for d in dirs)
    assert spread > 30  # the wind turns over a day
    minute = [w.met(T0 + 60 * k).wind_dir_deg for k in range(60)]
    assert len({round(d, 3) for d in minute}) > 30  # and meanders within the hour
    m = w.met(T0)
    assert m.stability in "ABCDEF"
    assert m.sigma_theta_deg > 0
    assert m.mixing_height_m > 0


def test_a_wind_vane_reads_the_gusts_its_hour_holds() -> None:
    """A vane's samples spread about the minute's mean by the class's own turbulence, so the
    hour's sigma_theta from them comes near the world's (turbulence and meander together);
    in fixed weather only the sensor's own noise is left."""
    from cloud.met import yamartino_sigma_theta

    w = World.generate(4, n_stations=16, start=T0)
    mast = next(s.id for s in w.stations if "wind_dir" in KIND_QUANTITIES[s.kind])
    for h in (T0 + 3 * 3600, T0 + 13 * 3600):
        samples = [w.sensor_value(mast, "wind_dir", t) for t in range(h, h + 3600, 20)]
        true_sigma = w.met(h).sigma_theta_deg
        assert yamartino_sigma_theta(samples) == pytest.approx(true_sigma, rel=0.25)
    calm = _hand_world()
    samples = [calm.sensor_value("MAST", "wind_dir", t) for t in range(T0, T0 + 3600, 20)]
    assert yamartino_sigma_theta(samples) < 5.0  # the sensor's 3-degree noise alone


def test_bad_requests_are_input_errors() -> None:
    w = World.generate(1, n_stations=9)
    with pytest.raises(InputError):
        w.concentration("NOPE", "pm10", T0)
    with pytest.raises(InputError):
        w.concentration(w.stations[0].id, "nonsense", T0)
    with pytest.raises(InputError):
        World.generate(1, truth_model="lagrangian")


def test_scalar_and_vector_hashes_agree() -> None:
    from firmware_sim.world_fields import key, normal, normals, uniform, uniforms

    base = key(1, "x")
    idx = np.array([0, 5, 123456789, 2**40, T0])
    assert [uniform(base, int(i)) for i in idx] == list(uniforms(base, idx))
    assert np.allclose([normal(base, int(i)) for i in idx], normals(base, idx), rtol=0, atol=1e-15)
