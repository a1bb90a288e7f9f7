"""What every JSON request body must satisfy, on the control plane and the edge alike.

- At most ``MAX_JSON_DEPTH`` levels of arrays and objects. Python's parser gives up near 1,000
  levels with ``RecursionError``, pydantic's serializer and the JSON columns earlier still;
  no request of ours needs more than a handful.
- No lone UTF-16 surrogate (``"\\ud800"``): legal JSON, but not Unicode, so the tokenizer,
  PostgreSQL and the JSON answer all fail on it later.

A refusal names the field to fix, ``messages[0].content`` style.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeAlias

MAX_JSON_DEPTH = 64
TOO_DEEP = (f"The request body is nested more than {MAX_JSON_DEPTH} levels deep; "
            "flatten it")
_SURROGATE = re.compile("[\ud800-\udfff]")

Trail: TypeAlias = "tuple[Trail, str | int] | None"


class JsonInputError(Exception):
    """A body refused; ``where`` names the field to blame, when there is one."""

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where


def loads(raw: bytes | str) -> Any:
    """``json.loads`` then :func:`check`; text that is not JSON raises ``ValueError``."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JsonInputError(TOO_DEEP) from None
    check(value)
    return value


def check(value: Any) -> None:
    """Walk a parsed body (iteratively: it may be deep) for the limits above."""
    stack: list[tuple[Any, int, Trail]] = [(value, 1, None)]
    while stack:
        node, depth, trail = stack.pop()
        if isinstance(node, str):
            _check_text(node, trail)
            continue
        if not isinstance(node, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise JsonInputError(TOO_DEEP)
        if isinstance(node, dict):
            for key in node:
                if _SURROGATE.search(key):
                    raise JsonInputError(f"A key in {_where(trail) or 'the body'} is not valid "
                                         "Unicode (a lone UTF-16 surrogate); rename it",
                                         _where(trail) or None)
            stack.extend((child, depth + 1, (trail, key)) for key, child in node.items())
        else:
            stack.extend((child, depth + 1, (trail, index)) for index, child in enumerate(node))


def _check_text(text: str, trail: Trail) -> None:
    if text.isascii():  # a C scan; a multi-megabyte prompt is checked in microseconds
        return
    found = _SURROGATE.search(text)
    if found:
        where = _where(trail) or "The request body"
        raise JsonInputError(f"{where} is not valid Unicode: it holds a lone UTF-16 surrogate "
                             f"(\\u{ord(found.group()):04x}) at character {found.start()}; "
                             "pair it or remove it", _where(trail) or None)


def _where(trail: Trail) -> str:
    parts: list[str] = []
    while trail is not None:
        trail, key = trail
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "".join(reversed(parts)).removeprefix(".")
