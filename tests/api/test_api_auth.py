"""API keys: with keys set, every route but /healthz and /readyz needs `Authorization:
Bearer KEY` (401 envelope otherwise); without keys nothing does."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from api_helpers import Api, assert_envelope
from support.servers import serve_in_thread

from app.api import create_app

KEYS = ["first-key", "second-key"]


@pytest.fixture(scope="module")
def locked_api(sample_api: Api) -> Iterator[Api]:
    """A second app over the same service (one store per process), with keys."""
    s = sample_api.settings
    settings = s.model_copy(update={"api": s.api.model_copy(update={"keys": KEYS})})
    app = create_app(settings, service=sample_api.service)
    with serve_in_thread(app) as url:
        yield Api(url, settings, sample_api.service, app)


def test_health_routes_stay_open(locked_api: Api) -> None:
    with locked_api.client() as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code in (200, 503)
        assert c.get("/openapi.json").status_code == 200  # api.docs_public (no data in it)


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": "first-key"},
    {"Authorization": "Basic Zmlyc3Qta2V5"}, {"Authorization": "Bearer first-key-not"},
])
def test_without_a_valid_key_every_other_route_is_401(locked_api: Api,
                                                      headers: dict[str, str]) -> None:
    with locked_api.client(headers=headers) as c:
        for method, path in [("GET", "/v1/documents"), ("GET", "/v1/config"),
                             ("GET", "/v1/models"), ("GET", "/metrics"),
                             ("POST", "/v1/retrieve"), ("POST", "/v1/query"),
                             ("POST", "/v1/chat/completions"), ("POST", "/v1/documents"),
                             ("DELETE", "/v1/documents/abc"), ("GET", "/v1/jobs/abc"),
                             ("GET", "/v1/unknown")]:
            r = c.request(method, path, json={"question": "q"})
            assert_envelope(r, 401, code="invalid_api_key")
            assert r.headers["www-authenticate"] == "Bearer"


def test_either_key_opens_the_routes(locked_api: Api) -> None:
    for key in KEYS:
        with locked_api.client(headers={"Authorization": f"Bearer {key}"}) as c:
            assert c.get("/v1/documents").status_code == 200
            r = c.post("/v1/retrieve", json={"question": "lighthouse batteries",
                                             "budget_tokens": 1024})
            assert r.status_code == 200, r.text


def test_the_openai_client_sends_its_key(locked_api: Api) -> None:
    good = openai.OpenAI(base_url=locked_api.url + "/v1", api_key=KEYS[0], max_retries=0)
    assert good.models.list().data
    bad = openai.OpenAI(base_url=locked_api.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_the_openapi_document_declares_the_bearer_scheme(locked_api: Api) -> None:
    doc = httpx.get(locked_api.url + "/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["security"] == [{"bearer": []}]
    assert doc["paths"]["/healthz"]["get"]["security"] == []


def test_without_keys_no_route_needs_one(client: httpx.Client) -> None:
    assert client.get("/v1/documents").status_code == 200
    assert client.get("/metrics").status_code == 200
    doc = client.get("/openapi.json").json()
    assert "security" not in doc


def test_cors_preflight_and_headers_when_origins_are_set(sample_api: Api) -> None:
    s = sample_api.settings
    settings = s.model_copy(update={"api": s.api.model_copy(update={
        "keys": KEYS, "cors_origins": ["http://ui.example"]})})
    app = create_app(settings, service=sample_api.service)
    with serve_in_thread(app) as url:
        pre = httpx.options(url + "/v1/query", headers={
            "Origin": "http://ui.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "http://ui.example"
        denied = httpx.get(url + "/v1/documents", headers={"Origin": "http://ui.example"})
        assert denied.status_code == 401  # the browser may read why
        assert denied.headers["access-control-allow-origin"] == "http://ui.example"
        other = httpx.get(url + "/healthz", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers
