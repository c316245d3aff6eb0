"""Secrets never reach a log: grep every log of the whole run (this file runs last among the e2e tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_no_secret_appears_in_any_log_of_the_run(stack) -> None:  # type: ignore[no-untyped-def]
    cfg = stack.cfg
    secrets = {
        "RAZORPAY_KEY_SECRET": cfg.razorpay_key_secret,
        "RAZORPAY_WEBHOOK_SECRET": cfg.razorpay_webhook_secret,
        "RAZORPAY_WEBHOOK_SECRET_PREVIOUS": cfg.razorpay_webhook_secret_previous,
        "TOKEN_SECRET": cfg.token_secret,
        "FLOWER_BASIC_AUTH": cfg.flower_basic_auth.split(":", 1)[1],
    }
    logs = [p for p in Path(stack.run_dir).rglob("*") if p.is_file() and p.suffix in {".log", ".out"}]
    assert len(logs) >= 9, "expected the API's, the sandbox's and every worker's logs"
    for log in logs:
        text = log.read_text(errors="replace")
        for name, value in secrets.items():
            assert value and value not in text, f"{name} appears in {log}"


def test_no_card_number_or_upi_id_appears_in_kiranas_own_logs(stack) -> None:  # type: ignore[no-untyped-def]
    """The UPI ids the payment tests pay with, and any card-number-like digit run, stay out of our logs."""
    from kirana.logs import card_numbers

    vpas = ("asha@okicici", "ravi@okaxis")
    run_dir = Path(stack.run_dir)
    ours = [*run_dir.glob("api.log"), *run_dir.glob("ws.log"), *run_dir.glob("worker-*.log"),
            *run_dir.glob("outbox-relay.log")]
    assert len(ours) >= 9, "expected the API's, the ws server's and every worker's logs"
    for log in ours:
        text = log.read_text(errors="replace")
        for vpa in vpas:
            assert vpa not in text, f"UPI id {vpa} appears in {log}"
        digits = card_numbers(text)
        assert not digits, f"card-number-like digits {digits[:3]} appear in {log}"
