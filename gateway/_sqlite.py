"""sqlite-utils, imported without numpy.

sqlite-utils imports numpy and pandas at import time whenever they are installed, only to
map their scalar types to column types (``sqlite_utils/db.py``). The gateway never hands
it numpy values, and numpy would cost the station computer about 20 MB of its memory
budget (``bench/backlog_drain.py`` measures it). So the gateway imports sqlite-utils with
those two hidden; anything that imports numpy later still gets it.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING

__all__ = ["Database", "sqlite_utils"]


def _load() -> ModuleType:
    if "sqlite_utils" in sys.modules or "numpy" in sys.modules:
        import sqlite_utils

        return sqlite_utils
    hidden = [name for name in ("numpy", "pandas") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import sqlite_utils
    finally:
        for name in hidden:
            sys.modules.pop(name, None)
    return sqlite_utils


if TYPE_CHECKING:  # the checker sees the real module (and its types)
    import sqlite_utils
else:
    sqlite_utils = _load()
Database = sqlite_utils.Database
