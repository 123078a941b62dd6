"""Small SQL-building helpers shared by the store and the tables kept beside it (alerts,
events): only placeholders are ever spliced into the text, values go as parameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def conditions(*pairs: tuple[str, Any]) -> tuple[list[str], list[Any]]:
    """The conditions whose value is given (not None) and their parameters, in order:
    ``conditions(("station = ?", station), ("ts >= ?", since))``. A list or tuple value
    fills that many placeholders (``("state IN (?, ?)", ["a", "b"])``)."""
    cond: list[str] = []
    params: list[Any] = []
    for sql, value in pairs:
        if value is None:
            continue
        cond.append(sql)
        if isinstance(value, list | tuple):
            params.extend(value)
        else:
            params.append(value)
    return cond, params


def where_clause(cond: Sequence[str]) -> str:
    """``WHERE a AND b``, or nothing without conditions."""
    return f"WHERE {' AND '.join(cond)}" if cond else ""
