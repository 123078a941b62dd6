"""The heat layers kept with every hour's inversion result: sparse, ordered, bounded, and
saved by the hourly job of ``cloud run``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cloud.config import parse_config
from cloud.hourly import HourResult, make_part
from cloud.inversion_types import FoundSource, Inventory, InversionResult
from cloud.map_heat import heat_layers
from cloud.service import Service

GRID = (-200.0, 100.0, 800.0, 700.0, 100.0)  # 10 x 6 cells


def result(surface: np.ndarray | None, mean: np.ndarray | None) -> InversionResult:
    inv = None
    if mean is not None:
        inv = Inventory(
            10,
            6,
            -200.0,
            100.0,
            100.0,
            mean,
            np.full_like(mean, 0.05),
            np.zeros_like(mean),
            np.full_like(mean, 0.1),
        )
    src = FoundSource(150.0, 350.0, 1.0, 0.1, 0.9)
    return InversionResult((src,), 30.0, 3.0, surface=surface, inventory=inv, grid=GRID)


def test_the_surface_keeps_the_cells_near_its_peak_largest_first() -> None:
    surface = np.zeros((6, 10))
    surface[2, 3] = 0.6  # the cell of x 100..200, y 300..400
    surface[2, 4] = 0.3
    surface[0, 0] = 0.0999
    surface[5, 9] = 0.0001  # under 1e-3 of the peak: dropped
    total = surface.sum()
    surface /= total
    heat = heat_layers(result(surface, None))
    assert (heat["x0"], heat["y0"], heat["cell_m"]) == (-200.0, 100.0, 100.0)
    cells = heat["surface"]["cells"]
    assert [(ix, iy) for ix, iy, _ in cells] == [(3, 2), (4, 2), (0, 0)]
    assert cells[0][2] == heat["surface"]["max"] == float(f"{0.6 / total:.3g}")
    assert cells[2][2] == float(f"{0.0999 / total:.3g}")
    assert "inventory" not in heat


def test_the_inventory_keeps_positive_cells_with_their_sigma_and_a_cap() -> None:
    rng = np.random.default_rng(3)
    mean = rng.uniform(-0.2, 1.0, (6, 10))
    heat = heat_layers(result(None, mean), max_cells=7)
    inv = heat["inventory"]
    assert "surface" not in heat
    assert (inv["x0"], inv["y0"], inv["cell_m"], inv["unit"]) == (-200.0, 100.0, 100.0, "g/s")
    assert len(inv["cells"]) == 7
    values = [c[2] for c in inv["cells"]]
    assert values == sorted(values, reverse=True) and min(values) > 0
    assert values[0] == inv["max"] == float(f"{mean.max():.3g}")
    ix, iy, _v, sigma = inv["cells"][0]
    assert mean[iy, ix] == mean.max() and sigma == 0.05


def test_nothing_to_draw_gives_the_grid_only() -> None:
    assert heat_layers(result(None, None)) == {"x0": -200.0, "y0": 100.0, "cell_m": 100.0}
    flat = heat_layers(result(np.zeros((6, 10)), -np.ones((6, 10))))
    assert "surface" not in flat
    assert flat["inventory"]["cells"] == [] and flat["inventory"]["max"] == 0.0


def test_the_hourly_job_keeps_the_heat_with_the_result(tmp_path: Path) -> None:
    cfg = parse_config(
        f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n[ingest]\nenabled = false\n'
        "[fusion]\nenabled = false\n[inversion]\nenabled = true\n",
        source=str(tmp_path / "cloud.toml"),
    )
    service = Service(cfg, clock=lambda: 1_780_010_000.0)
    try:
        part = make_part(service)
        surface = np.full((6, 10), 1 / 60)
        res = result(surface, np.full((6, 10), 0.2))
        part.job.save_result(HourResult(1_780_005_600, (1_780_005_600, 1_780_005_600), "ab", res))
        ((hour, quantity, stored, _),) = service.store.inversion_results()
    finally:
        service.store.close()
    assert (hour, quantity) == (1_780_005_600, "pm10")
    assert stored["sources"][0]["x_m"] == 150.0  # RESULT.json as before ...
    assert stored["heat"] == heat_layers(res)  # ... and the heat beside it
    assert len(stored["heat"]["surface"]["cells"]) == 60
