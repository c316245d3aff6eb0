"""schemathesis over the whole OpenAPI document, against the live stack, as every role and anonymous.

Every generated request (valid and invalid) is sent as a signed-in role (public
operations: anonymously; the ignored_auth check also sends each one without its
token); each answer must be no 5xx and must match the spec (status, content type,
schema, headers). `make test` runs a few fixed examples per operation, each as the
next role in turn; `make fuzz` many more, each as every role:

    KIRANA_FUZZ_EXAMPLES=100 KIRANA_FUZZ_ALL_ROLES=1 .venv/bin/python -m pytest tests/e2e/test_contract_fuzz.py
"""

from __future__ import annotations

import itertools
import os
import uuid

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.config import SchemathesisConfig

from api import create_app
from api.contract import openapi
from kirana.permissions import Role
from tests.harness import Client

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("KIRANA_FUZZ_EXAMPLES", "5"))
# make fuzz: every example as every role (make test: one role per example, in turn).
ALL_ROLES = os.environ.get("KIRANA_FUZZ_ALL_ROLES", "") == "1"
ROLES = [str(role) for role in Role]
_turn = itertools.count()

# Schema-valid data may still break a rule a JSON schema cannot state (token_id only with
# payment_method "token", each sku once, a strong password, quiet hours both or neither, a
# product change naming a field, a sync batch from a device registered first):
# that is a 422 problem, so 422 is an accepted answer to valid data too.
# A well-formed but wrongly signed checkout or webhook is a 400 invalid-signature: the fuzzer
# cannot sign, so for those two operations a 400 is an accepted answer as well.
# A store's analytics take a range of days: `from` not after `to` and at most 366 days, a rule
# between two query parameters (one defaulting to today) that JSON Schema cannot state, answered
# with a 400 invalid-query like any other bad query.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
MAY_BE_400 = ["/api/v1/payments/verify", "/webhooks/razorpay", "/api/v1/stores/{store_id}/analytics"]
CONFIG = SchemathesisConfig.from_dict({
    "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
    "operations": [{"include-path": path, "checks": {"positive_data_acceptance": {
        "expected-statuses": [*ACCEPTED, "400"]}}} for path in MAY_BE_400],
})
# The code's own document (test_contract_http checks the live stack serves the same one).
# Loaded at import, not from the stack: schemathesis's lazy fixture loader does not work on pytest 9.
schema = schemathesis.openapi.from_dict(openapi(create_app()), config=CONFIG)


@pytest.fixture(scope="module")
def signed_in(stack) -> dict[str, Client]:  # type: ignore[no-untyped-def]
    # The store roles work a store of their own: what the fuzzer writes to "their" shelf (products
    # with any sku and stock) must not land among the seeded products the other tests pick from.
    fuzz_store = f"store-fuzz-{uuid.uuid4().hex[:8]}"
    store = {Role.STORE_OWNER: fuzz_store, Role.STORE_STAFF: fuzz_store}
    return {str(role): stack.user(role, store_id=store.get(role)) for role in Role}


# Operations that end the caller's session: fuzzed as a customer of their own, not the shared clients.
SESSION_ENDING = {("POST", "/api/v1/auth/logout")}


def _dropped_in_transit(case) -> bool:  # type: ignore[no-untyped-def]
    """A query value requests cannot put in a URL (null, an object, an empty list) is left out of it, so
    the server gets a valid request that schemathesis still counts as invalid: not a finding."""
    return any(value is None or isinstance(value, dict) or value == [] for value in (case.query or {}).values())


# gunicorn's limit_request_line (its default): a longer request line is answered 414 by gunicorn
# itself, before the app runs (a long invalid `q`, percent-encoded, gets there).
REQUEST_LINE_LIMIT = 4094


def _request_line(case, base_url: str) -> int:  # type: ignore[no-untyped-def]
    sent = case.as_transport_kwargs(base_url=base_url)
    prepared = requests.Request(sent["method"], sent["url"], params=sent["params"]).prepare()
    return len(f"{prepared.method} {prepared.path_url} HTTP/1.1")


@schema.parametrize()
# make test draws the same examples every run (a red build is the code's, not the draw's); make fuzz explores.
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not ALL_ROLES,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_every_answer_matches_the_spec(case, stack, signed_in) -> None:  # type: ignore[no-untyped-def]
    if _dropped_in_transit(case):
        return
    if _request_line(case, stack.base_url) > REQUEST_LINE_LIMIT:
        # Not the app's answer, so not the contract's: only that gunicorn refused it.
        assert case.call(base_url=stack.base_url).status_code == 414
        return
    if not case.operation.definition.raw.get("security", [{}]):
        # Public: the token changes nothing. (Anonymous calls of the others: the ignored_auth check.)
        case.call_and_validate(base_url=stack.base_url, session=requests.Session())
        return
    if (case.method.upper(), case.path) in SESSION_ENDING:
        case.call_and_validate(base_url=stack.base_url, session=stack.customer().http)
        return
    if ALL_ROLES:
        for client in signed_in.values():
            case.call_and_validate(base_url=stack.base_url, session=client.http)
        return
    # One role per example, in turn: every role meets every operation within a few examples.
    role = ROLES[next(_turn) % len(ROLES)]
    case.call_and_validate(base_url=stack.base_url, session=signed_in[role].http)
