"""Identifiers: string ULIDs with a short prefix that says what they name."""

from __future__ import annotations

from ulid import ULID


def new_id(prefix: str) -> str:
    """A sortable, unique id such as ``ord_01JD3...``."""
    return f"{prefix}_{ULID()}"
