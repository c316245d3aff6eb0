"""Fixtures for the end-to-end tests: signed-in users of the live stack."""

from __future__ import annotations

import pytest

from tests.harness import Client


@pytest.fixture
def customer(stack) -> Client:  # type: ignore[no-untyped-def]
    """A freshly registered customer, logged in."""
    return stack.customer()
