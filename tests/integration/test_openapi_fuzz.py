"""Schemathesis against the live gateway: generated requests, checked answers.

The schema is imagepipe/openapi.yaml (test_openapi.py checks that the gateway
serves exactly that at ``/openapi.json``); for each operation schemathesis generates requests from it (valid and invalid ones)
and checks that no answer is a 5xx and that every status code, Content-Type,
required header and JSON body is what the spec says.  Bounded: a fixed
number of examples per operation, so the run stays well under a minute.

Not checked: ``positive_data_acceptance`` -- a body that is valid per the
schema (any bytes) is still refused with 415/422 when it is no image, which
no JSON schema can express.
"""
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance, negative_data_rejection, response_headers_conformance,
    response_schema_conformance, status_code_conformance)

from imagepipe.web.openapi import openapi_spec

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]
EXAMPLES_PER_OPERATION = 100

# Loaded at import, not through schemathesis.pytest.from_fixture: that reads
# a private pytest attribute (Function._nodeid) which pytest 9 no longer has.
# An invalid request must be refused with one of these: the spec's 4xx codes
# (414 when a generated query string outgrows the request-line limit).
REJECTIONS = ["400", "401", "404", "405", "413", "414", "415", "422"]
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}})
schema = schemathesis.openapi.from_dict(openapi_spec(), config=CONFIG)


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_generated_requests_get_documented_answers(pipeline, base_url, case):
    case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=10)
