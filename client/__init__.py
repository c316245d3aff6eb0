"""A typed Python client for Kirana's API, and `python -m client.demo`."""

from client.api import ApiError, KiranaClient, Unavailable

__all__ = ["ApiError", "KiranaClient", "Unavailable"]
