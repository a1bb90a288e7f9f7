"""Reading one field of a JSON body, with the refusal that names it.

Each reader takes the containing object, the key, and ``param``: the path the error names
when it is not the key itself (``response_format.json_schema.strict``). Absent and ``null``
read as None (or the default). Numbers are JSON numbers: never booleans, strings, ``NaN`` or
``Infinity``.
"""

from __future__ import annotations

import math
from typing import Any

from arkor.edge.errors import bad


def number(body: dict[str, Any], name: str, low: float, high: float, *,
           param: str | None = None) -> float | None:
    """``body[name]`` as a finite number in ``[low, high]``."""
    value = body.get(name)
    where = param or name
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise bad(f"{where} must be a number", where, "invalid_type")
    if not low <= value <= high:
        raise bad(f"{where} must be between {low:g} and {high:g}", where)
    return float(value)


def integer(body: dict[str, Any], name: str, low: int, high: int | None = None, *,
            param: str | None = None) -> int | None:
    """``body[name]`` as an integer of at least ``low`` (and at most ``high``)."""
    value = body.get(name)
    where = param or name
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"{where} must be an integer", where, "invalid_type")
    if value < low:
        raise bad(f"{where} must be at least {low}", where)
    if high is not None and value > high:
        raise bad(f"{where} must be at most {high}", where)
    return value


def boolean(body: dict[str, Any], name: str, default: bool, *, param: str | None = None
            ) -> bool:
    """``body[name]`` as a boolean; ``default`` when absent or null."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        where = param or name
        raise bad(f"{where} must be a boolean", where, "invalid_type")
    return value


def _given(body: dict[str, Any], name: str, param: str | None, required: bool
           ) -> tuple[Any, str]:
    """``body[name]`` (None when absent or null) and the name a refusal gives; a required
    field that is missing is refused here."""
    value, where = body.get(name), param or name
    if value is None and required:
        raise bad(f"{where} is required", where, "missing_required_parameter")
    return value, where


def string(body: dict[str, Any], name: str, *, param: str | None = None,
           required: bool = False) -> str | None:
    """``body[name]`` as a string (required: present and non-empty)."""
    value, where = _given(body, name, param, required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad(f"{where} must be a string", where, "invalid_type")
    if required and not value:
        raise bad(f"{where} must not be empty", where)
    return value


def obj(body: dict[str, Any], name: str, *, param: str | None = None,
        required: bool = False) -> dict[str, Any] | None:
    """``body[name]`` as a JSON object."""
    value, where = _given(body, name, param, required)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad(f"{where} must be an object", where, "invalid_type")
    return value
