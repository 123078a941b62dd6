"""How long one hourly inversion takes at district scale: 10,000 cells x 250 stations x a
24-hour window, on one core.

The figure is the steady-state hourly run as ``cloud.hourly.HourlyJob`` does it: the
matrix blocks of the 23 earlier hours are cached, one new hour's block is built, then the
scan, the exact refits and (separately timed) the gridded inventory. The baseline in the
same run is the same window with an empty cache (every block built), i.e. what the run
costs without block reuse. Threads are pinned to one (BLAS too) before numpy loads.

    python bench/inversion_speed.py [--stations 250] [--cells-side 100] [--hours 24]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import emit  # noqa: E402
from cloud.hourly import run_hour  # noqa: E402
from cloud.inversion_matrix import Grid, MatrixCache, hour_block  # noqa: E402
from cloud.inversion_types import InversionConfig  # noqa: E402
from cloud.invert_io import met_from_dicts, obs_from_dicts  # noqa: E402
from firmware_sim.world import World  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stations", type=int, default=250, help="ambient stations")
    ap.add_argument("--cells-side", type=int, default=100, help="cells along each side")
    ap.add_argument("--hours", type=int, default=24, help="window length")
    ap.add_argument("--seed", type=int, default=1, help="world seed")
    args = ap.parse_args()
    side = args.cells_side * 100.0
    domain = (0.0, 0.0, side, side)
    world = World.generate(args.seed, domain=domain, n_stations=args.stations,
                           kinds={"reference": 0.15, "micro": 0.85}, n_sources=2,
                           source_kinds=("other",), rate_range_g_s=(1.0, 4.0))
    hours = world.hour_starts(args.hours + 1)
    obs = obs_from_dicts(world.hourly_obs(hours))
    met = met_from_dicts(world.hourly_met(hours))
    cfg = InversionConfig(window_hours=args.hours, inventory=False)
    cfg_inv = InversionConfig(window_hours=args.hours, inventory=True)
    grid = Grid(*domain, cell=100.0)

    # one block alone
    rec = [(r.x_m, r.y_m, r.z_m) for r in obs if r.time == hours[0]]
    import numpy as np

    from cloud.inversion import _hour_mets

    mets, _, _, _ = _hour_mets([hours[0]], met, cfg)
    t = time.perf_counter()
    hour_block(grid, np.array(rec), mets[hours[0]], np.full(grid.size, 2.0))
    block_s = time.perf_counter() - t

    # baseline: the window ending at hour 23 from an empty cache
    cache = MatrixCache(max_blocks=args.hours + 2)
    t = time.perf_counter()
    cold = run_hour(hours[-2], obs, met, config=cfg, domain=domain, cache=cache)
    cold_s = time.perf_counter() - t
    # steady state: the next hour, 23 blocks cached, one new
    t = time.perf_counter()
    warm = run_hour(hours[-1], obs, met, config=cfg, domain=domain, cache=cache)
    warm_s = time.perf_counter() - t
    # the same hour again with the inventory (blocks all cached)
    t = time.perf_counter()
    with_inv = run_hour(hours[-1], obs, met, config=cfg_inv, domain=domain, cache=cache)
    inv_s = time.perf_counter() - t
    truth = world.truth(hours[1:])
    emit("inversion_speed", {
        "what": "one hourly inversion, steady state (23 of 24 hour blocks cached)",
        "cells": grid.size,
        "stations": len({r.station for r in obs}),
        "window_hours": args.hours,
        "station_hours": warm.result.n_obs,
        "seconds_hourly_run": round(warm_s, 3),
        "baseline_seconds_cold_run": round(cold_s, 3),
        "ratio_baseline_over_figure": round(cold_s / warm_s, 2),
        "seconds_hourly_run_with_inventory": round(inv_s, 3),
        "seconds_one_hour_block": round(block_s, 3),
        "target_seconds": 1.0,
        "sources_found": len(warm.result.sources),
        "sources_true": len(truth),
        "inventory_iterations": with_inv.result.inventory.iterations
        if with_inv.result.inventory else 0,
        "cold_sources_found": len(cold.result.sources),
    })


if __name__ == "__main__":
    main()
