"""Stability from what the met data offer, sun position, sigma_theta, meander."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from cloud.met import (
    derive_stability,
    excess_meander_deg,
    insolation_class,
    is_calm,
    solar_elevation_deg,
    stability_from_insolation,
    stability_from_obukhov,
    stability_from_sigma_theta,
    vector_mean_direction,
    yamartino_sigma_theta,
)


def _t(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_solar_elevation_at_known_moments() -> None:
    # summer solstice, local solar noon at 34.8 N: 90 - 34.8 + 23.44 ~ 78.6 deg
    noon = _t("2025-06-21T12:00:00") - 113.55 / 15 * 3600 + 90  # + equation of time (~1.5 min)
    assert solar_elevation_deg(noon, 34.8, 113.55) == pytest.approx(78.6, abs=0.5)
    # local midnight: far below the horizon
    assert solar_elevation_deg(noon + 12 * 3600, 34.8, 113.55) < -30
    # March equinox at the equator, noon at Greenwich: nearly overhead
    assert solar_elevation_deg(_t("2025-03-20T12:07:00"), 0.0, 0.0) > 88


@pytest.mark.parametrize(
    ("sigma", "u", "day", "expected"),
    [
        (25.0, 2.0, True, "A"),
        (25.0, 3.5, True, "B"),
        (25.0, 5.0, True, "C"),
        (25.0, 7.0, True, "D"),
        (20.0, 2.0, True, "B"),
        (14.0, 2.0, True, "C"),
        (10.0, 2.0, True, "D"),
        (5.0, 2.0, True, "D"),  # E/F by day become D
        (5.0, 2.0, False, "E"),
        (2.0, 2.0, False, "F"),
        (25.0, 2.0, False, "F"),  # unstable-looking sigma at night with weak wind
        (25.0, 3.2, False, "E"),
        (25.0, 4.0, False, "D"),
    ],
)
def test_sigma_theta_method_with_wind_adjustment(sigma: float, u: float, day: bool,
                                                 expected: str) -> None:
    assert stability_from_sigma_theta(sigma, u, daytime=day) == expected


def test_sigma_theta_thresholds_scale_with_roughness() -> None:
    # 13 deg is C over 15 cm roughness, but the bounds grow by (1 m / 15 cm)^0.2 in a city
    assert stability_from_sigma_theta(13.0, 2.0, daytime=True) == "C"
    assert stability_from_sigma_theta(13.0, 2.0, daytime=True, z0_m=1.0) == "D"


def test_obukhov_mapping_for_prairie_grass_roughness() -> None:
    # Golder lengths for z0 = 0.006 m: A -6.8, B -10.9, C -26.5, D inf, E 26.5, F 10.9
    for length, cls in ((-6.8, "A"), (-10.9, "B"), (-26.5, "C"), (1e9, "D"), (26.5, "E"),
                        (10.9, "F"), (-9.8, "B"), (204.0, "D"), (math.inf, "D")):
        assert stability_from_obukhov(length, 0.006) == cls, length


def test_pasquill_table() -> None:
    assert stability_from_insolation(1.5, "strong") == "A"
    assert stability_from_insolation(4.0, "moderate") == "C"
    assert stability_from_insolation(7.0, "slight") == "D"
    assert stability_from_insolation(2.5, "night") == "F"
    assert stability_from_insolation(2.5, "night", cloud_okta=5) == "E"
    assert stability_from_insolation(2.5, "overcast") == "D"
    assert insolation_class(70.0) == "strong"
    assert insolation_class(45.0) == "moderate"
    assert insolation_class(45.0, cloud_okta=6) == "slight"
    assert insolation_class(10.0) == "overcast"  # sun too low to drive convection
    assert insolation_class(-5.0) == "night"


def test_derive_stability_prefers_the_best_information() -> None:
    t = _t("2025-06-21T04:00:00")  # local noon at 113.55 E
    assert derive_stability(3.0, t, given="b").letter == "B"
    assert derive_stability(3.0, t, obukhov_m=-5.0, sigma_theta_deg=5.0).method == "obukhov"
    st = derive_stability(2.0, t, sigma_theta_deg=24.0, lat_lon=(34.8, 113.55))
    assert (st.letter, st.method) == ("A", "sigma_theta")
    st = derive_stability(2.5, t, lat_lon=(34.8, 113.55))
    assert (st.letter, st.method) == ("B", "insolation")  # "A-B" at 2-3 m/s: the neutral half
    night = derive_stability(2.5, t + 12 * 3600, lat_lon=(34.8, 113.55))
    assert night.letter == "F"
    assert derive_stability(2.5, t).method == "default"
    assert derive_stability(2.5, t).letter == "D"
    # an hourly sigma_theta (it holds the meander) sets no class when told so: the sun does
    st = derive_stability(2.5, t + 12 * 3600, sigma_theta_deg=24.0, lat_lon=(34.8, 113.55),
                          class_from_sigma_theta=False)  # fmt: skip
    assert (st.letter, st.method) == ("F", "insolation")


def test_yamartino_and_vector_mean_handle_the_north_wrap() -> None:
    dirs = [350.0, 355.0, 0.0, 5.0, 10.0]
    assert vector_mean_direction(dirs) == pytest.approx(0.0, abs=1e-9) or vector_mean_direction(
        dirs) == pytest.approx(360.0, abs=1e-9)
    s = yamartino_sigma_theta(dirs)
    assert 6.0 < s < 8.5  # the arithmetic std of 350..10 across the wrap would be ~170
    assert yamartino_sigma_theta([90.0] * 10) == pytest.approx(0.0, abs=1e-6)


def test_excess_meander_and_calms() -> None:
    assert excess_meander_deg(10.0, "D") == pytest.approx(0.0)
    assert excess_meander_deg(None, "D") == 0.0
    assert excess_meander_deg(26.0, "D") == pytest.approx(24.0)
    assert is_calm(0.5)
    assert not is_calm(1.0)
    assert is_calm(float("nan"))
