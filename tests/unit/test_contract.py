"""The OpenAPI document covers every route, describes errors as problems, and is valid OpenAPI 3.1."""

from __future__ import annotations

import json
import re

import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from api import create_app
from api.contract import EXCLUDED, build
from api.security import ATTRIBUTE, PUBLIC

APP = create_app()
SPEC = build(APP)


def _operations() -> list[tuple[str, str, str]]:
    """(endpoint, METHOD, path as OpenAPI writes it) for every route of the app."""
    found = []
    for rule in APP.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        found += [(rule.endpoint, method, path) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return found


OPERATIONS = _operations()


@pytest.mark.parametrize(("endpoint", "method", "path"), OPERATIONS, ids=[f"{m} {p}" for _, m, p in OPERATIONS])
def test_every_route_is_in_the_spec_or_excluded_with_a_reason(endpoint: str, method: str, path: str) -> None:
    documented = method.lower() in SPEC["paths"].get(path, {})
    if endpoint in EXCLUDED:
        assert not documented, f"{endpoint} is excluded but documented"
        assert EXCLUDED[endpoint].strip()
    else:
        assert documented, (f"{method} {path} is not in the OpenAPI document: put @documented(...) under its "
                            "@requires (README, 'API contract')")


def test_the_exclusions_name_real_routes() -> None:
    assert set(EXCLUDED) <= {endpoint for endpoint, _, _ in OPERATIONS}


def test_the_document_is_valid_openapi_3_1() -> None:
    assert SPEC["openapi"].startswith("3.1")
    OPENAPI_31_VALIDATOR.validate(SPEC)


def test_every_ref_resolves() -> None:
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(SPEC)))
    assert refs <= set(SPEC["components"]["schemas"])


@pytest.mark.parametrize(("endpoint", "method", "path"),
                         [o for o in OPERATIONS if o[0] not in EXCLUDED], ids=str)
def test_security_and_errors_follow_the_routes_permission(endpoint: str, method: str, path: str) -> None:
    operation = SPEC["paths"][path][method.lower()]
    permission = getattr(APP.view_functions[endpoint], ATTRIBUTE)
    assert operation["x-permission"] == permission
    if permission == PUBLIC:
        assert operation["security"] == []
    else:
        assert operation["security"] == [{"bearer": []}]
        assert {"401", "403"} <= set(operation["responses"])
    for status, response in operation["responses"].items():
        if int(status) >= 400:
            assert response["content"] == {"application/problem+json": {
                "schema": {"$ref": "#/components/schemas/Problem"}}}, (status, response)
    if "requestBody" in operation:
        assert {"400", "413", "415", "422"} <= set(operation["responses"])


def test_the_webhook_documents_its_signature_header() -> None:
    operation = SPEC["paths"]["/webhooks/razorpay"]["post"]
    header = next(p for p in operation["parameters"] if p["name"] == "X-Razorpay-Signature")
    assert header["in"] == "header" and header["required"] is True
    assert operation["security"] == []


def test_orders_document_the_idempotency_key_and_the_request_model() -> None:
    operation = SPEC["paths"]["/api/v1/orders"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in operation["parameters"])
    body = SPEC["components"]["schemas"]["OrderIn"]
    assert set(body["required"]) == {"store_id", "items", "payment_method"}
    assert SPEC["paths"]["/api/v1/orders/{order_id}"]["get"]["responses"]["200"]["content"]["application/json"] == {
        "schema": {"$ref": "#/components/schemas/OrderOut"}}


def test_the_spec_and_the_docs_page_are_served_without_a_token() -> None:
    http = APP.test_client()

    spec = http.get("/api/v1/openapi.json")
    page = http.get("/api/v1/docs")
    script = http.get("/api/v1/docs/swagger-ui-bundle.js")

    assert spec.status_code == 200 and spec.get_json() == SPEC
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert 'src="docs/swagger-ui-bundle.js"' in page.get_data(as_text=True)
    assert script.status_code == 200 and len(script.get_data()) > 100_000
    script.close()


def test_the_documented_choices_are_the_domains() -> None:
    """Literal choices written in the models stay those the domain knows (sorts, board scopes and periods)."""
    from typing import get_args

    from api import responses, schemas
    from kirana import search
    from kirana.loyalty import boards

    assert get_args(schemas.SearchQuery.model_fields["sort"].annotation) == search.SORTS
    assert get_args(responses.SearchResults.model_fields["sort"].annotation) == search.SORTS
    assert get_args(responses.Scope) == boards.SCOPES
    assert get_args(responses.Period) == boards.PERIODS
