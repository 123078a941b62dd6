"""Downlink commands (``down/cmd``): decode, authorise, execute, and answer every one on
``up/ack`` with its id — a refused one too (``rejected``: malformed, unknown, not allowed
by ``[commands] allow``, expired or stale; ``error``: tried and failed; ``ok``: done).

A command the broker delivers twice (QoS 1) is answered again with the first answer and
not executed again. ``actuate``, ``set_interval`` and ``alert`` issued more than
``STALE_S`` ago (their ``ts``) are refused: a spray order queued for a gateway that was
offline for hours must not run when it comes back. Arguments:

* ``set_calibration`` ``{"sensor", "quantity", "kind": "linear"|"points"|"rh", "slope",
  "offset", "points": [[raw, ref], ...], "kappa", "source", "fit": {...},
  "effective": ISO 8601 | epoch s, "note"}`` -> ``{"sensor", "quantity", "version"}``;
* ``set_interval`` ``{"sensor"?: name, "interval_s", "duration_s"?}`` (burst sampling,
  then back to the configured interval; no sensor = all);
* ``actuate`` ``{"actuator", "state": "on"|"off", "duration_s"?}`` (within the
  actuator's ``max_on_s``);
* ``alert`` ``{"level": info|warning|critical, "message", "actuate"?: {actuate args}}``;
* ``ping`` -> uptime, version, outbox depth and the like;
* ``set_config`` ``{"toml": "..."}``: validated, written atomically, applied; rolled back
  to the previous file if the new config fails to start.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from gateway.actuators import Actuators
from gateway.calibration import Calibrator, CalSet
from gateway.calstore import CalibrationStore
from gateway.clock import Clock
from gateway.config import StationConfig
from gateway.errors import CommandRejected
from protocols import telemetry as tm
from protocols.errors import AirtraceError, InputError

log = logging.getLogger(__name__)

STALE_S = 600.0
TIME_SENSITIVE = ("actuate", "set_interval", "alert")
REMEMBER = 256
LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}


class IntervalSetter(Protocol):
    def set_interval(
        self, sensor: str | None, interval_s: float, duration_s: float | None
    ) -> None: ...


@dataclass
class CommandContext:
    """What commands act on; the daemon fills it in."""

    config: StationConfig
    clock: Clock
    calibrations: CalibrationStore | None
    calibrator: Calibrator
    actuators: Actuators
    poller: IntervalSetter
    info: Callable[[], Mapping[str, Any]]
    apply_config: Callable[[str], Mapping[str, Any]]


def _number(args: Mapping[str, Any], key: str, *, required: bool = True) -> float | None:
    value = args.get(key)
    if value is None:
        if required:
            raise CommandRejected(f"missing {key!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise CommandRejected(f"{key} must be a positive number, got {value!r}")
    return float(value)


class CommandHandler:
    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx
        self._answered: OrderedDict[str, tm.Ack] = OrderedDict()
        self.counts: dict[tuple[str, str], int] = {}

    def handle(self, payload: bytes) -> tm.Ack:
        """Execute one command payload; always returns the ack to publish."""
        now = self.ctx.clock.now()
        try:
            cmd = tm.decode_command(payload)
        except tm.TelemetryError as exc:
            cid = tm.command_id(payload) or "unknown"
            log.warning("command %s refused: %s", cid, exc)
            return self._count(tm.Ack(id=cid, status="rejected", error=str(exc), ts=now))
        if cmd.id in self._answered:
            return self._answered[cmd.id]
        ack = self._run(cmd, now)
        self._answered[cmd.id] = ack
        while len(self._answered) > REMEMBER:
            self._answered.popitem(last=False)
        return self._count(ack)

    def _count(self, ack: tm.Ack) -> tm.Ack:
        key = (ack.cmd or "unknown", ack.status)
        self.counts[key] = self.counts.get(key, 0) + 1
        return ack

    def _run(self, cmd: tm.Command, now: float) -> tm.Ack:  # noqa: PLR0911 - one per outcome
        def refuse(reason: str) -> tm.Ack:
            log.warning("command %s (%s) refused: %s", cmd.id, cmd.cmd, reason)
            return tm.Ack(id=cmd.id, status="rejected", cmd=cmd.cmd, error=reason, ts=now)

        if cmd.cmd not in self.ctx.config.allowed_commands:
            return refuse(f"{cmd.cmd} is not allowed on this station ([commands] allow)")
        if cmd.expires is not None and now > cmd.expires:
            return refuse(f"expired {now - cmd.expires:.0f} s ago")
        if cmd.cmd in TIME_SENSITIVE and cmd.ts is not None and now - cmd.ts > STALE_S:
            return refuse(f"stale: issued {now - cmd.ts:.0f} s ago (limit {STALE_S:g} s)")
        try:
            result = getattr(self, f"_do_{cmd.cmd}")(dict(cmd.args), cmd)
        except (CommandRejected, InputError) as exc:
            return refuse(str(exc))
        except AirtraceError as exc:
            log.warning("command %s (%s) failed: %s", cmd.id, cmd.cmd, exc)
            return tm.Ack(id=cmd.id, status="error", cmd=cmd.cmd, error=str(exc), ts=now)
        except Exception as exc:  # a command never takes the daemon down
            log.exception("command %s (%s) failed unexpectedly", cmd.id, cmd.cmd)
            return tm.Ack(
                id=cmd.id, status="error", cmd=cmd.cmd, error=f"internal error: {exc}", ts=now
            )
        log.info("command %s (%s) done: %s", cmd.id, cmd.cmd, result)
        return tm.Ack(id=cmd.id, status="ok", cmd=cmd.cmd, result=result, ts=now)

    # -- the commands ---------------------------------------------------------------------
    def _do_ping(self, args: dict[str, Any], cmd: tm.Command) -> dict[str, Any]:
        return dict(self.ctx.info())

    def _do_set_calibration(self, args: dict[str, Any], cmd: tm.Command) -> dict[str, Any]:
        store = self.ctx.calibrations
        if store is None:
            raise CommandRejected("this gateway has no calibration store")
        cs = CalSet.from_args(args, now=self.ctx.clock.now())
        if cs.sensor not in {s.name for s in self.ctx.config.sensors}:
            raise CommandRejected(f"no sensor named {cs.sensor!r}")
        stored = store.add(replace(cs, origin=cmd.id), now=self.ctx.clock.now())
        self.ctx.calibrator.refresh(force=True)
        return {"sensor": stored.sensor, "quantity": stored.quantity, "version": stored.version}

    def _do_set_interval(self, args: dict[str, Any], cmd: tm.Command) -> dict[str, Any]:
        unknown = set(args) - {"sensor", "interval_s", "duration_s"}
        if unknown:
            raise CommandRejected(f"unknown argument {sorted(unknown)[0]!r}")
        sensor = args.get("sensor")
        if sensor is not None and sensor not in {s.name for s in self.ctx.config.sensors}:
            raise CommandRejected(f"no sensor named {sensor!r}")
        interval = _number(args, "interval_s")
        assert interval is not None
        if interval < 0.05:
            raise CommandRejected("interval_s must be at least 0.05")
        duration = _number(args, "duration_s", required=False)
        self.ctx.poller.set_interval(sensor, interval, duration)
        return {"sensor": sensor, "interval_s": interval, "duration_s": duration}

    def _do_actuate(self, args: dict[str, Any], cmd: tm.Command) -> dict[str, Any]:
        unknown = set(args) - {"actuator", "state", "duration_s"}
        if unknown:
            raise CommandRejected(f"unknown argument {sorted(unknown)[0]!r}")
        name, state = args.get("actuator"), args.get("state")
        if not isinstance(name, str):
            raise CommandRejected("missing 'actuator'")
        if state not in ("on", "off"):
            raise CommandRejected("state must be 'on' or 'off'")
        duration = _number(args, "duration_s", required=False)
        st = self.ctx.actuators.switch(
            name, state == "on", duration_s=duration, reason=f"command {cmd.id}"
        )
        return {"actuator": name, "state": "on" if st.on else "off", "until": st.until}

    def _do_alert(self, args: dict[str, Any], cmd: tm.Command) -> dict[str, Any]:
        level = args.get("level", "warning")
        if level not in LEVELS:
            raise CommandRejected(f"level must be one of {', '.join(LEVELS)}")
        message = args.get("message")
        if not isinstance(message, str) or not message:
            raise CommandRejected("missing 'message'")
        log.log(LEVELS[level], "alert from the centre (%s): %s", level, message)
        result: dict[str, Any] = {"logged": True}
        act = args.get("actuate")
        if act is not None:
            if not isinstance(act, dict):
                raise CommandRejected("'actuate' must be an object of actuate arguments")
            result["actuate"] = self._do_actuate(act, cmd)
        return result

    def _do_set_config(self, args: dict[str, Any], cmd: tm.Command) -> dict[str, Any]:
        text = args.get("toml")
        if not isinstance(text, str) or not text.strip():
            raise CommandRejected("set_config needs 'toml': the whole station config as text")
        return dict(self.ctx.apply_config(text))
