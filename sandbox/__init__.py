"""A local Razorpay sandbox (in the spirit of stripe-mock) for tests and demos.

`python -m sandbox --port 9100` serves Razorpay's REST paths under /v1 so the official
`razorpay` SDK works against it (`client.base_url = "http://127.0.0.1:9100"`), plays the
customer's side of Checkout under /_sandbox/checkout, sends signed webhooks with retries,
and takes fault-injection knobs under /_sandbox/control.
"""

from sandbox.config import SandboxConfig
from sandbox.razorpay import create_app

__all__ = ["SandboxConfig", "create_app"]
