"""Text PostgreSQL cannot store: a NUL character, or a lone UTF-16 surrogate (it has no UTF-8
form, so the driver fails to encode it). One rule for every text that reaches the database,
checked where untrusted data comes in: the API's parsers and the LLM's output."""

from __future__ import annotations

import re
from typing import Any

from core.errors import DomainError

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class TextNotStorable(DomainError):
    code = "TEXT_NOT_STORABLE"


def unstorable_text_field(data: Any) -> str | None:
    """The path (`rationale`, `events.2`) of the first text in `data`, a key or a value at any
    depth, that cannot be stored; None when all can. Iterative: the depth is not bounded here."""
    pending: list[tuple[str, Any]] = [("", data)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                return path or "body"
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and _UNSTORABLE.search(key):
                    return path or "body"
                pending.append((name, item))
        elif isinstance(value, list | tuple):
            pending.extend((f"{path}.{i}" if path else str(i), v) for i, v in enumerate(value))
    return None


def text_storable_check(data: Any) -> None:
    """Raises TextNotStorable naming the field when any text in `data` cannot be stored."""
    field = unstorable_text_field(data)
    if field is not None:
        raise TextNotStorable(
            f"{field} holds a NUL character or an unpaired surrogate, which cannot be stored.",
            extra={"field": field},
        )
