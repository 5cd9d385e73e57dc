"""Schemathesis against the served OpenAPI document (bounded): generated valid and invalid
requests for every operation must never give a 5xx, must match the documented statuses,
content types and schemas, and invalid ones must be refused.

The app's LLM URL has nobody listening, so the answer routes exercise validation and the
503 envelope quickly instead of waiting on the CPU model; retrieval, documents and jobs run
for real on their own store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from api_helpers import Api, wait_warm
from support.ports import free_port
from support.servers import serve_in_thread

from app.api import create_app

pytestmark = pytest.mark.slow

EXAMPLES = 25


@pytest.fixture(scope="module")
def fuzz_api(api_settings: Callable[..., Any], make_service: Callable[..., Any]) -> Iterator[Api]:
    settings = api_settings(
        llm_url=f"http://127.0.0.1:{free_port()}/v1",
        api={"max_budget_tokens": 4096, "max_upload_mb": 0.25, "max_files_per_upload": 2})
    service = make_service(settings)
    app = create_app(settings, service=service)
    with serve_in_thread(app) as url:
        wait_warm(app)
        yield Api(url, settings, service, app)


def no_server_error_but_llm_down(ctx: Any, response: Any, case: Any) -> bool:
    """Like schemathesis' not_a_server_error, except the one 5xx this app must give: 503
    llm_unavailable from the routes that need the (absent) LLM, not_ready from /readyz."""
    if response.status_code < 500:
        return True
    body = response.json()
    assert response.status_code == 503, response.text[:300]
    assert body["error"]["code"] in ("llm_unavailable", "not_ready"), \
        f"{response.status_code}: {response.text[:300]}"
    return True


def refused_naming(param: str, statuses: tuple[int, ...]) -> Any:
    """In place of positive_data_acceptance where JSON Schema cannot say what the route
    checks (the chat route: "the last user or assistant message is the user's"; uploads: the
    file's type and content): a schema-valid request may be refused, but only with one of
    `statuses` and an envelope naming `param`."""
    def check(ctx: Any, response: Any, case: Any) -> bool:
        if response.status_code < 400 or response.status_code >= 500:
            return True
        err = response.json()["error"]
        assert response.status_code in statuses and err["param"] == param, response.text[:300]
        return True

    check.__name__ = f"refused_naming_{param}"
    return check


# Routes whose refusals of schema-valid requests are expected, and how they must look.
SHAPE_CHECKED = {"POST /v1/chat/completions": ("messages", (422,)),
                 "POST /v1/documents": ("files", (413, 415, 422))}


def _operations(api: Api) -> list[Any]:
    import schemathesis
    from schemathesis.config import SchemathesisConfig

    # A body over api.max_body_mb is refused with 413 before it is even parsed.
    config = SchemathesisConfig.from_str(
        "[checks.negative_data_rejection]\n"
        'expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", '
        '"422", "428", "429", "5xx"]\n')
    schema = schemathesis.openapi.from_url(api.url + "/openapi.json", config=config)
    return [result.ok() for result in schema.get_all_operations()]


def _call(url: str, excluded: list[Any], extra: list[Any]) -> Any:
    def run(case: Any) -> None:
        case.call_and_validate(base_url=url, timeout=60, excluded_checks=excluded,
                               additional_checks=extra)

    return run


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_every_operation_survives_generated_requests(fuzz_api: Api, mode: str) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    failures: list[str] = []
    operations = _operations(fuzz_api)
    assert len(operations) >= 11
    tried = 0
    for operation in operations:
        excluded: list[Any] = [not_a_server_error]
        extra: list[Any] = [no_server_error_but_llm_down]
        if operation.label in SHAPE_CHECKED and mode == "positive":
            excluded.append(positive_data_acceptance)
            extra.append(refused_naming(*SHAPE_CHECKED[operation.label]))

        run = given(case=operation.as_strategy(generation_mode=generation))(
            _call(fuzz_api.url, excluded, extra))
        run = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                       suppress_health_check=list(HealthCheck))(run)
        try:
            run()
            tried += 1
        except Unsatisfiable:
            assert mode == "negative"  # nothing to get wrong: no parameters, or any string
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert tried >= (11 if mode == "positive" else 4)
