"""Small helpers every benchmark shares: machine information and printing the JSON."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from typing import Any


def machine() -> dict[str, Any]:
    """Where a figure was measured: enough to compare two runs honestly."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    return info


def emit(name: str, figures: dict[str, Any]) -> None:
    """Print one JSON document: the bench's name, its figures and the machine."""
    doc = {"bench": name, **figures, "machine": machine()}
    json.dump(doc, sys.stdout, indent=2, default=float)
    sys.stdout.write("\n")
