"""Schemathesis against the live server's /openapi.json: every operation, with requests
that fit the schema and requests that do not (bad bodies, parameters, headers, keys). No
5xx, and every response (status, content type, headers, body) conforms to the schema.

Every check but one: "schema-valid data is accepted" cannot hold for an API whose
validation goes past what a JSON Schema says (a plan that names an unknown tool, a
callback host not allowed, a run id that does not exist). Such answers are still checked
against the schema like all others.

Cases come from schemathesis's own strategies, driven here by hypothesis (its lazy pytest
loader reaches into a pytest internal that pytest 9 removed).
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.auths import AuthStorage
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.service.conftest import KEYS, Server

EXAMPLES = 30


class FuzzKey:
    """The fuzzer is a tenant of its own, so its runs stay out of the other tests' lists.
    As an auth provider (not a forced header), so that cases meant to go without a key, or
    with a made-up one, do."""

    def get(self, case: schemathesis.Case, context: Any) -> str:
        return KEYS["fuzz"]

    def set(self, case: schemathesis.Case, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def test_every_operation_conforms_and_never_fails_on_bad_input(api: Server):
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    schema.config.update(base_url=api.url, request_timeout=30)
    auth = AuthStorage()
    auth.auth(refresh_interval=None)(FuzzKey)
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {"POST /v1/runs", "GET /v1/runs", "GET /v1/runs/{run_id}",
            "GET /v1/runs/{run_id}/events", "POST /v1/runs/{run_id}/cancel",
            "POST /v1/runs/{run_id}/approve", "POST /v1/runs/{run_id}/reject",
            "POST /v1/runs/{run_id}/resume", "POST /v1/runs/{run_id}/retry",
            "GET /v1/tools", "GET /healthz", "GET /readyz"} <= labels
    for operation in operations:
        cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE, auth_storage=auth),
                          operation.as_strategy(GenerationMode.NEGATIVE, auth_storage=auth))

        @given(case=cases)
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
