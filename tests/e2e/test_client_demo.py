"""`python -m client.demo` at a small size against the live stack: every outcome shows up, none is lost."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from client.demo import Demo, plans, table

pytestmark = pytest.mark.e2e


def test_the_demo_places_mixed_orders_and_reports_each_outcome(stack) -> None:  # type: ignore[no-untyped-def]
    stack.sandbox.reset()
    out = io.StringIO()
    console = Console(file=out, width=120)

    summary = Demo(stack.base_url, stack.sandbox.base_url, timeout_s=40).run(10, concurrency=4, console=console)
    console.print(table(summary))

    counts = summary.counts
    assert counts["other"] == 0, [r.note for r in summary.results if r.outcome == "other"]
    assert sum(counts.values()) == 10
    # The first plans are one of each kind: COD, UPI and card confirm; a failed card; an unknown sku.
    assert counts["confirmed"] >= 3 and counts["payment_failed"] >= 1 and counts["rejected"] >= 1
    failed = [r.plan for r in summary.results if r.outcome == "payment_failed"]
    assert all(p.pay_fails for p in failed)
    assert any(r.plan.unknown_sku for r in summary.results if r.outcome == "rejected")
    assert summary.percentile(50) is not None and summary.percentile(50) <= summary.percentile(99)
    text = out.getvalue()
    assert "time to confirm p50" in text and "payment failed" in text


def test_the_plan_mix_is_fixed_and_mixed() -> None:
    made = plans(300, seed=7)
    assert made == plans(300, seed=7)
    methods = {p.method for p in made}
    assert methods == {"cod", "upi", "card"}
    assert 10 < sum(p.pay_fails for p in made) < 60
    assert 3 < sum(p.unknown_sku for p in made) < 40
