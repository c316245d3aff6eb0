"""The typed client: its models follow the OpenAPI document; 503s are retried with the same Idempotency-Key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from pydantic import BaseModel

from api import create_app
from api.contract import build
from client import models
from client.api import ApiError, KiranaClient, Unavailable
from tests.http_stub import answer, serving

SCHEMAS = build(create_app())["components"]["schemas"]
CLIENT_MODELS = [m for m in vars(models).values()
                 if isinstance(m, type) and issubclass(m, BaseModel) and m.__name__ in SCHEMAS]


def test_the_client_models_the_main_shapes() -> None:
    assert {"OrderOut", "LoginOut", "TokensOut", "UserOut", "ProductPage", "VerifiedOut", "Problem"} <= {
        m.__name__ for m in CLIENT_MODELS}


@pytest.mark.parametrize("model", CLIENT_MODELS, ids=lambda m: m.__name__)
def test_each_client_model_matches_the_spec_component_of_its_name(model: type[BaseModel]) -> None:
    spec = SCHEMAS[model.__name__]
    client = model.model_json_schema()
    assert set(client["properties"]) <= set(spec["properties"]), "the client reads a field the API does not send"
    assert set(client.get("required", [])) == set(spec.get("required", [])) & set(client["properties"])


ORDER = {"id": "o1", "status": "accepted", "customer_id": "u1", "store_id": "s1", "payment_method": "cod",
         "items": [{"sku": "A", "qty": 1}], "lines": [], "total_paise": None, "created_at_ms": 1,
         "updated_at_ms": 1, "events": [{"status": "accepted", "at_ms": 1}]}


class _Flaky(BaseHTTPRequestHandler):
    """503 with Retry-After for the first `failures` submits, then 202."""

    failures = 2
    seen: list[dict[str, str]] = []  # noqa: RUF012  (reset by the fixture)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append(dict(self.headers))
        if len(self.seen) <= self.failures:
            body, status, extra = {"type": "/problems/service-unavailable", "title": "Unavailable",
                                   "status": 503}, 503, {"Retry-After": "1"}
        else:
            body, status, extra = ORDER, 202, {}
        answer(self, status, json.dumps(body).encode(), {"Content-Type": "application/json", **extra})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[str]:
    _Flaky.seen = []
    _Flaky.failures = 2
    with serving(_Flaky) as url:
        yield url


def test_a_submit_is_retried_on_503_after_retry_after_with_one_idempotency_key(flaky: str) -> None:
    slept: list[float] = []
    kirana = KiranaClient(flaky, backoff_s=0.01, sleep=slept.append)

    order = kirana.submit_order("s1", [("A", 1)], "cod")

    assert order.id == "o1" and order.status == "accepted"
    keys = {seen["Idempotency-Key"] for seen in _Flaky.seen}
    assert len(_Flaky.seen) == 3 and len(keys) == 1 and keys != {""}
    assert slept == [1.0, 1.0], "each retry waits at least what Retry-After asks"


def test_every_submit_gets_a_key_of_its_own(flaky: str) -> None:
    _Flaky.failures = 0
    kirana = KiranaClient(flaky, sleep=lambda _: None)
    kirana.submit_order("s1", [("A", 1)], "cod")
    kirana.submit_order("s1", [("A", 1)], "cod")
    assert _Flaky.seen[0]["Idempotency-Key"] != _Flaky.seen[1]["Idempotency-Key"]


def test_a_lasting_outage_raises_unavailable_with_the_problem(flaky: str) -> None:
    _Flaky.failures = 100
    kirana = KiranaClient(flaky, retries=2, sleep=lambda _: None)
    with pytest.raises(Unavailable) as raised:
        kirana.submit_order("s1", [("A", 1)], "cod")
    assert isinstance(raised.value, ApiError) and raised.value.problem.type == "/problems/service-unavailable"
    assert len(_Flaky.seen) == 3
