"""An audit event is written even when the broker is down."""

from __future__ import annotations

import pytest
import requests

from kirana import audit
from kirana.permissions import Role
from stack import servers
from tests.harness import api_server

pytestmark = pytest.mark.e2e


def test_with_redis_down_a_role_change_is_still_audited(stack, customer) -> None:  # type: ignore[no-untyped-def]
    # Given an admin, and an API whose broker is gone.
    admin = stack.user(Role.ADMIN)
    dead = servers.free_port()
    with api_server(stack.run_dir, stack.cfg, "api-audit-noredis", REDIS_URL=f"redis://127.0.0.1:{dead}/0",
                    REDIS_TIMEOUT_S="0.5") as api:
        # When the admin changes a role (MongoDB is up, so the change itself can be made).
        resp = requests.put(f"http://127.0.0.1:{api.port}/api/v1/users/{customer.user_id}/role",
                            json={"role": "rider"}, headers=admin.http.headers, timeout=30)

    # Then the change is made and its audit entry was written directly.
    assert resp.status_code == 200, resp.text
    entries = list(stack.db[audit.AUDIT].find({"action": "role.changed", "target": customer.user_id}))
    assert len(entries) == 1
    assert entries[0]["actor"] == admin.user_id and entries[0]["detail"]["to"] == "rider"
    assert audit.verify(stack.db) is None
