"""The ``airtrace`` console script: one entry point, the exit-code rules, logging set-up.

Verbs live beside what they drive — ``gateway.cli``, ``cloud.cli``, ``firmware_sim.cli``,
``airtrace.demo`` — and are mounted here (click groups). This module owns the rules every
verb obeys:

* exit 0 on success;
* exit 2 on bad usage or bad input (``InputError``), with a one-line reason on stderr;
* exit 1 on any other failure, also one line; ``AIRTRACE_DEBUG=1`` adds the traceback;
* never a traceback for bad input.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import click

from airtrace import __version__
from protocols.errors import AirtraceError

PROG = "airtrace"
LOG_LEVELS = ("debug", "info", "warning", "error")


def setup_logging(level: str) -> None:
    """Log to stderr; plain lines under systemd (journald adds its own timestamps)."""
    under_journald = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = (
        "%(levelname)s %(name)s: %(message)s"
        if under_journald
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr, force=True)


@click.group(
    name=PROG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name=PROG, message="%(prog)s %(version)s")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    envvar="AIRTRACE_LOG_LEVEL",
    help="Logging threshold on stderr (env AIRTRACE_LOG_LEVEL).",
)
def app(log_level: str) -> None:
    """airtrace: edge gateways for air-quality stations, a central service that fuses their
    feeds and locates pollution sources to 100 m cells every hour, and graded alerts back to
    the people and machines that can act.

    Start with 'airtrace demo'. Set AIRTRACE_DEBUG=1 to see tracebacks of failures.
    """
    setup_logging(log_level)


def _mount() -> None:
    from airtrace.demo import demo
    from cloud.cli import app as cloud_app
    from firmware_sim.cli import app as sim_app
    from gateway.cli import app as gateway_app

    app.add_command(demo, "demo")
    app.add_command(gateway_app, "gateway")
    app.add_command(cloud_app, "cloud")
    app.add_command(sim_app, "sim")


_mount()


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fail(code: int, message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {_one_line(message)}\n")
    sys.stderr.flush()
    return code


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 - one return per outcome
    """Run the command line; return the exit status instead of raising."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app.main(args=args, prog_name=PROG, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        # a group called bare prints its help, as `git` does, and exits 2
        sys.stderr.write(exc.ctx.get_help() + "\n" if exc.ctx else "")
        return 2
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        return _fail(2, exc.format_message() + hint)
    except click.ClickException as exc:  # e.g. a file given as a parameter cannot be opened
        return _fail(2, exc.format_message())
    except click.exceptions.Abort:
        return _fail(130, "aborted")
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return _fail(130, "interrupted")
    except AirtraceError as exc:
        if os.environ.get("AIRTRACE_DEBUG"):
            logging.getLogger(PROG).exception("failed")
        return _fail(exc.exit_code, str(exc))
    except BrokenPipeError:
        # the reader of our stdout went away (e.g. `| head`): not an error of ours
        return 0
    except Exception as exc:  # the last line of defence prints one line
        if os.environ.get("AIRTRACE_DEBUG"):
            logging.getLogger(PROG).exception("internal error")
        return _fail(1, f"internal error: {type(exc).__name__}: {exc}")
    return result if isinstance(result, int) else 0
