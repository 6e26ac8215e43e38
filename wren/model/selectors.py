"""Selector-valued fields: kept as the user's text, checked with wren.selector."""

from __future__ import annotations

from typing import Any

from wren.model._fields import Conv, FieldError
from wren.selector import SelectorError, parse_selector

__all__ = ["SELECTOR"]


class _Selector(Conv[str]):
    def load(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise FieldError(path, f"must be a selector string, not {value!r}")
        try:
            parse_selector(value)
        except SelectorError as e:
            raise FieldError(path, f"invalid selector {value!r}: {e.reason} at column "
                                   f"{e.column}") from None
        return value


SELECTOR = _Selector()
