"""``airtrace cloud registry ...`` and the operator's small tools (gaps, quarantine,
co-location): the command bodies, kept out of ``cloud/cli.py``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from protocols.errors import InputError

config_option = click.option(
    "--config",
    "-c",
    "config",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="CLOUD.toml",
    help="Cloud config file (TOML).",
)


def _open(config: Path) -> tuple[Any, Any]:
    from cloud.config import load_config
    from cloud.registry import Registry
    from cloud.store import open_store

    cfg = load_config(config)
    store = open_store(cfg.store.url, sqlite_synchronous=cfg.store.sqlite_synchronous)
    return store, Registry(store, cfg.domain)


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, default=str))


@click.group(no_args_is_help=True)
def registry() -> None:
    """Stations, sites, responsible persons and areas: list, confirm, add, import."""


@registry.command("list")
@config_option
@click.option(
    "--status",
    type=click.Choice(["pending", "confirmed", "retired"]),
    help="Only stations in this state.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_stations(config: Path, status: str | None, as_json: bool) -> None:
    """List registered stations (pending ones registered themselves from their status)."""
    store, reg = _open(config)
    with store:
        health = store.health()
        for st in store.stations(status=status):
            view = reg.station_view(st)
            h = health.get(st.id)
            view["health"] = None if h is None else h.status
            if as_json:
                _echo_json(view)
            else:
                pos = "-" if st.lat is None else f"{st.lat:.5f},{st.lon:.5f}"
                click.echo(
                    f"{st.id}\t{st.status}\t{st.kind}\t{st.state}\t{pos}\t{view['health'] or '-'}"
                )


@registry.command()
@config_option
@click.argument("station")
def show(config: Path, station: str) -> None:
    """Show one station as JSON (position, state, custody, what it measures)."""
    store, reg = _open(config)
    with store:
        st = store.get_station(station)
        if st is None:
            raise InputError(f"no station {station!r} in the registry")
        view = reg.station_view(st)
        view["custody"] = [asdict(c) for c in store.custody(station)]
        view["quantities"] = store.stream_quantities(station)
        click.echo(json.dumps(view, indent=2, ensure_ascii=False, default=str))


@registry.command()
@config_option
@click.argument("station")
def confirm(config: Path, station: str) -> None:
    """Accept a pending station: its readings join the inversion's inputs."""
    import time

    store, _ = _open(config)
    with store:
        st = store.confirm_station(station, time.time())
        click.echo(f"{st.id} confirmed ({st.kind}, {st.lat}, {st.lon})")


@registry.command()
@config_option
@click.argument("station")
@click.option(
    "--kind",
    type=click.Choice(["reference", "micro", "dust", "met", "high", "other"]),
    default=None,
    help="Station kind (a new station without one: other).",
)
@click.option("--lat", type=float, help="Latitude, degrees.")
@click.option("--lon", type=float, help="Longitude, degrees.")
@click.option("--inlet-height", type=float, help="Inlet height above ground, metres.")
@click.option("--name", help="A human name.")
@click.option("--mn", help="HJ 212 MN (device number) of its data logger.")
@click.option("--pw", help="HJ 212 PW (access password) of its data logger.")
def add(
    config: Path,
    station: str,
    kind: str | None,
    lat: float | None,
    lon: float | None,
    inlet_height: float | None,
    name: str | None,
    mn: str | None,
    pw: str | None,
) -> None:
    """Add or update a station (confirmed); an option left out keeps its value."""
    store, reg = _open(config)
    with store:
        given = {
            "kind": kind,
            "lat": lat,
            "lon": lon,
            "inlet_height_m": inlet_height,
            "name": name,
            "hj212_mn": mn,
            "hj212_pw": pw,
        }
        # an option not given keeps what the station has (updating its name must not
        # unpair its HJ 212 logger)
        rec = {"station": station, **{k: v for k, v in given.items() if v is not None}}
        st = reg.station_from(rec, f"station {station}")
        store.put_station(st)
        click.echo(f"{st.id} saved")


@registry.command()
@config_option
@click.argument("station")
def remove(config: Path, station: str) -> None:
    """Remove a station from the registry (its readings stay in the store)."""
    store, _ = _open(config)
    with store:
        if not store.delete_station(station):
            raise InputError(f"no station {station!r} in the registry")
        click.echo(f"{station} removed")


@registry.command("import")
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--what",
    type=click.Choice(["auto", "stations", "sites", "persons", "geojson"]),
    default="auto",
    show_default=True,
    help="What the file holds (auto: from its header or suffix).",
)
def import_(config: Path, file: Path, what: str) -> None:
    """Import stations, sites, persons (CSV) or all of them and areas (GeoJSON)."""
    store, reg = _open(config)
    with store:
        got = reg.import_file(file, what)
        click.echo(", ".join(f"{v} {k}" for k, v in asdict(got).items() if v) or "nothing imported")


@registry.command()
@config_option
@click.option(
    "--csv", "as_csv", is_flag=True, help="As the inversion's SITES.csv (site,x_m,y_m,h_m,kind)."
)
def sites(config: Path, as_csv: bool) -> None:
    """List registered sites (emitters) with their responsible persons."""
    store, reg = _open(config)
    with store:
        if as_csv:
            click.echo(reg.sites_csv(), nl=False)
            return
        for s in store.sites():
            _echo_json(reg.site_view(s))


def print_gaps(store: Any, station: str | None, as_json: bool) -> None:
    from protocols.timefmt import to_iso

    for g in store.gaps(station):
        if as_json:
            _echo_json({**asdict(g), "size": g.size})
        else:
            click.echo(
                f"{g.station}\t{g.epoch or '-'}\t{g.first_id}-{g.last_id}\tlost {g.size}\t"
                f"still missing {g.missing}\t{to_iso(g.detected)}"
            )


def print_quarantine(store: Any, limit: int, reason_class: str | None, as_json: bool) -> None:
    from protocols.timefmt import to_iso

    counts = store.quarantine_counts()
    if not as_json:
        click.echo("counts: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
    for q in store.quarantine_entries(limit, reason_class):
        if as_json:
            d = asdict(q)
            d["payload"] = q.payload.decode("utf-8", "replace")
            _echo_json(d)
        else:
            click.echo(f"{q.seq}\t{to_iso(q.received)}\t{q.reason_class}\t{q.topic}\t{q.reason}")


def colocate_cli(config: Path, station: str, reference: str, quantity: str, push: bool) -> None:
    import time
    from dataclasses import replace

    from cloud import colocation
    from cloud.config import load_config
    from cloud.fusion import Fusion
    from cloud.store import open_store

    cfg = load_config(config)
    with open_store(cfg.store.url, sqlite_synchronous=cfg.store.sqlite_synchronous) as store:
        for sid in (station, reference):
            if store.get_station(sid) is None:
                raise InputError(f"no station {sid!r} in the registry")
        now = time.time()
        cal = colocation.colocate(
            Fusion(store, cfg.fusion, cfg.domain), station, reference, quantity, now, now=now
        )
        cal = replace(cal, seq=store.add_calibration(cal))
        if push:
            from cloud.commands import Commander
            from cloud.mqtt import publish_once

            if cfg.mqtt is None:
                raise InputError("--push needs [mqtt] url in the config")
            mqtt = cfg.mqtt
            cal = colocation.push(
                Commander(store, lambda t, p, **kw: publish_once(mqtt, t, p), clock=lambda: now),
                cal,
                now,
            )
        _echo_json(asdict(cal))
