"""`python -m sandbox --port 9100 --webhook-url URL`: the Razorpay sandbox on werkzeug's threaded server.

Flags fall back to the environment (RAZORPAY_KEY_ID, RAZORPAY_KEY_SECRET, RAZORPAY_WEBHOOK_SECRET,
SANDBOX_WEBHOOK_URL, ...), then to the defaults in sandbox/config.py. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from sandbox.config import SandboxConfig
from sandbox.razorpay import create_app
from sandbox.serve import serve
from sandbox.web import EXTENSION

log = logging.getLogger("sandbox")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sandbox", description="A local Razorpay sandbox.")
    p.add_argument("--host", help="listen address (SANDBOX_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (SANDBOX_PORT, default 9100)")
    p.add_argument("--key-id", dest="key_id", help="API key id (RAZORPAY_KEY_ID)")
    p.add_argument("--key-secret", dest="key_secret",
                   help="API key secret (RAZORPAY_KEY_SECRET; prefer the environment: flags show in ps)")
    p.add_argument("--webhook-secret", dest="webhook_secret", help="webhook secret (RAZORPAY_WEBHOOK_SECRET)")
    p.add_argument("--webhook-url", dest="webhook_url", help="where webhooks go (SANDBOX_WEBHOOK_URL)")
    p.add_argument("--webhook-attempts", dest="webhook_attempts", type=int,
                   help="deliveries per event, the first included (SANDBOX_WEBHOOK_ATTEMPTS, default 6)")
    p.add_argument("--webhook-first-delay", dest="webhook_first_delay_s", type=float,
                   help="seconds before the first retry, doubling (SANDBOX_WEBHOOK_FIRST_DELAY_S, default 0.2)")
    p.add_argument("--webhook-timeout", dest="webhook_timeout_s", type=float,
                   help="seconds per delivery attempt (SANDBOX_WEBHOOK_TIMEOUT_S, default 5)")
    p.add_argument("--upi-late-capture-delay", dest="upi_late_capture_delay_s", type=float,
                   help="failed_then_captured: seconds from failure to capture (default 0.3)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = vars(parse_args(argv))
    logging.basicConfig(level=args.pop("log_level").upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = SandboxConfig.from_env(**args)
    except ValueError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    app = create_app(config)
    serve(app, config.host, config.port, name="Razorpay sandbox", detail=config.describe())
    app.extensions[EXTENSION].close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
