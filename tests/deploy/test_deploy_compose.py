"""docker-compose.yml as data: services, profiles, images, ports, volumes, health checks,
dependencies, and the wiring between them (URLs, ports, settings names)."""

from __future__ import annotations

import json
import re
import tomllib
import typing
from importlib.metadata import version
from urllib.parse import urlsplit

import pytest
from deploy_helpers import (
    COMPOSE,
    ENV_EXAMPLE,
    ROOT,
    compose,
    enabled,
    load_yaml,
    pass_through,
    settings_field,
)
from packaging.requirements import Requirement
from packaging.version import Version

from core.settings import Settings, VLLMSettings
from serving.vllm import render_command

SERVICES = {"qdrant", "vllm", "vllm-2", "router", "llamacpp", "api", "ui", "ingest", "ray-head",
            "ray-worker"}
LONG_RUNNING = SERVICES - {"ingest", "ray-head", "ray-worker"}  # Ray's: tests/deploy/test_deploy_ray.py


@pytest.fixture(scope="module")
def model() -> dict[str, typing.Any]:
    return compose(COMPOSE)


def _env(service: dict[str, typing.Any]) -> dict[str, typing.Any]:
    return service.get("environment") or {}


def _listen_port(name: str, s: dict[str, typing.Any]) -> int:
    """The port the service's process listens on inside its container."""
    cmd = s.get("command") or []
    if "--port" in cmd:
        return int(cmd[cmd.index("--port") + 1])
    env = _env(s)
    for key in ("RAG_API__PORT", "RAG_CPU_SERVER__PORT"):
        if key in env:
            return int(env[key])
    return {"qdrant": 6333, "ui": 8501}[name]


def _health_url(s: dict[str, typing.Any]) -> tuple[int, str]:
    test = " ".join(s["healthcheck"]["test"])
    m = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", test) or re.search(
        r"/dev/tcp/127\.0\.0\.1/(\d+).*GET (/\S+)", test)
    assert m, f"no local URL in health check: {test}"
    return int(m.group(1)), m.group(2)


def test_every_service_is_there(model: dict[str, typing.Any]) -> None:
    assert set(model["services"]) == SERVICES


def test_profiles_pick_exactly_one_llm(model: dict[str, typing.Any]) -> None:
    def llms(profiles: set[str]) -> set[str]:
        return {n for n, s in enabled(model, profiles).items()
                if "llm" in ((s.get("networks") or {}).get("default") or {}).get("aliases", [])}

    assert llms({"gpu"}) == {"vllm"}
    assert llms({"cpu"}) == {"llamacpp"}
    assert llms({"gpu", "replicas"}) == {"vllm"}  # vllm-2 and router are reached by their names
    assert llms(set()) == set()
    always = set(enabled(model, set()))
    assert always == {"qdrant", "api", "ui"}
    assert set(enabled(model, {"ingest"})) - always == {"ingest"}


def test_env_example_makes_gpu_the_default() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    assert "COMPOSE_PROFILES=gpu" in lines


def test_third_party_images_are_pinned(model: dict[str, typing.Any]) -> None:
    for name, s in model["services"].items():
        image = s["image"]
        if "build" in s:
            assert (ROOT / s["build"]["context"] / s["build"]["dockerfile"]).is_file(), name
            continue
        repo, _, tag = image.partition(":")
        assert re.fullmatch(r"v\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned to a release"


def test_qdrant_server_matches_the_client(model: dict[str, typing.Any]) -> None:
    server = Version(model["services"]["qdrant"]["image"].split(":v")[1])
    client = Version(version("qdrant-client"))
    # qdrant-client supports servers one minor version apart at most.
    assert server.major == client.major and abs(server.minor - client.minor) <= 1


def test_vllm_image_satisfies_the_gpu_extra(model: dict[str, typing.Any]) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    req = next(Requirement(r) for r in extras["gpu"] if Requirement(r).name == "vllm")
    for name in ("vllm", "vllm-2"):
        image = model["services"][name]["image"]
        assert image.startswith("vllm/vllm-openai:")
        assert Version(image.split(":v")[1]) in req.specifier


def test_vllm_command_is_the_rendered_one(model: dict[str, typing.Any]) -> None:
    rendered = render_command(VLLMSettings(host="0.0.0.0"))
    assert rendered[:2] == ["vllm", "serve"]  # the vllm-openai image's ENTRYPOINT
    for name in ("vllm", "vllm-2"):
        assert model["services"][name]["command"] == rendered[2:]


@pytest.mark.parametrize("env", [
    {"RAG_VLLM__MODEL": "meta-llama/Llama-3.1-70B-Instruct", "RAG_VLLM__TENSOR_PARALLEL_SIZE": "4"},
    {"RAG_VLLM__MAX_MODEL_LEN": "32768", "RAG_VLLM__GPU_MEMORY_UTILIZATION": "0.85",
     "RAG_VLLM__SERVED_MODEL_NAME": "llama", "RAG_VLLM__MAX_NUM_BATCHED_TOKENS": "16384"},
])
def test_env_lines_move_compose_and_settings_alike(env: dict[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from_settings = render_command(Settings().vllm)[2:]
    resolved = compose(COMPOSE, env=env)
    assert resolved["services"]["vllm"]["command"] == from_settings
    gpus = resolved["services"]["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]["count"]
    assert int(gpus) == Settings().vllm.tensor_parallel_size


def test_vllm_service(model: dict[str, typing.Any]) -> None:
    s = model["services"]["vllm"]
    device = s["deploy"]["resources"]["reservations"]["devices"]
    assert device == [{"driver": "nvidia", "count": "1", "capabilities": ["gpu"]}]
    assert s.get("ipc") == "host" or s.get("shm_size")
    raw = load_yaml(COMPOSE)["services"]["vllm"]
    assert raw["environment"]["HF_TOKEN"] == "${HF_TOKEN:-}"  # from .env, never a value here
    cache = [v for v in s["volumes"] if v.endswith(":/root/.cache/huggingface")]
    assert cache and cache[0].split(":")[0] in model["volumes"]
    assert _health_url(s) == (VLLMSettings().port, "/health")
    assert int(s["healthcheck"]["start_period"].rstrip("s")) >= VLLMSettings().startup_timeout_s


def test_second_replica_has_its_own_gpu_and_port(model: dict[str, typing.Any]) -> None:
    one, two = model["services"]["vllm"], model["services"]["vllm-2"]
    assert two["profiles"] == ["replicas"]
    devices = two["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["device_ids"] == ["1"] and "count" not in devices[0]
    assert one["ports"] != two["ports"]
    assert "networks" not in two  # no `llm` alias: the API reaches it through RAG_LLM__URLS


def test_published_ports(model: dict[str, typing.Any]) -> None:
    published: dict[str, str] = {}
    for name, s in model["services"].items():
        for spec in s.get("ports", []):
            parts = spec.split(":")
            host, target = ":".join(parts[:-1]), int(parts[-1])
            assert target == _listen_port(name, s), f"{name}: {spec}"
            assert host not in published, f"{name} and {published.get(host)} both publish {host}"
            published[host] = name
    # Unauthenticated back ends only on the loopback interface; the API and UI for users.
    for host, name in published.items():
        if name in {"qdrant", "vllm", "vllm-2"}:
            assert host.startswith("127.0.0.1:"), f"{name} published on all interfaces"
    assert {"8080", "8501"} <= set(published)
    assert "llamacpp" not in published.values()


def test_volumes(model: dict[str, typing.Any]) -> None:
    declared = set(model["volumes"])
    used = set()
    for name, s in model["services"].items():
        for spec in s.get("volumes", []):
            source = spec.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared
    assert "qdrant-data:/qdrant/storage" in model["services"]["qdrant"]["volumes"]
    assert "api-data:/data" in model["services"]["api"]["volumes"]
    assert _env(model["services"]["api"])["RAG_DATA_DIR"] == "/data"


def test_health_checks_probe_the_service_itself(model: dict[str, typing.Any]) -> None:
    for name in LONG_RUNNING:
        s = model["services"][name]
        test = s["healthcheck"]["test"]
        assert test[0] == "CMD", name
        # None of these images has curl or wget: python or bash's /dev/tcp only.
        assert test[1] in {"python", "python3", "bash"}, name
        port, path = _health_url(s)
        assert port == _listen_port(name, s), name
        expected = {"qdrant": "/readyz", "vllm": "/health", "vllm-2": "/health",
                    "llamacpp": "/health", "router": "/health", "api": "/healthz",
                        "ui": "/_stcore/health"}[name]
        assert path == expected, name


def test_dependencies(model: dict[str, typing.Any]) -> None:
    services = model["services"]
    for name, s in services.items():
        for dep, cond in (s.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has no health check"
    api = services["api"]["depends_on"]
    assert api["qdrant"] == {"condition": "service_healthy"}  # required
    # The LLM of whichever profile runs; neither is required, so `--profile cpu` needs no GPU.
    for llm in ("vllm", "llamacpp"):
        assert api[llm] == {"condition": "service_healthy", "required": False}
    assert api["vllm-2"]["required"] is False
    assert services["ui"]["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert services["ingest"]["depends_on"] == {"qdrant": {"condition": "service_healthy"}}


def _url_target(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 80


def test_llm_url_reaches_either_llm(model: dict[str, typing.Any]) -> None:
    services = model["services"]
    host, port = _url_target(_env(services["api"])["RAG_LLM__URL"])
    assert host == "llm" and _env(services["api"])["RAG_LLM__URL"].endswith("/v1")
    for name in ("vllm", "llamacpp"):
        assert port == _listen_port(name, services[name])
    assert "--host" in services["vllm"]["command"]
    assert services["vllm"]["command"][services["vllm"]["command"].index("--host") + 1] == "0.0.0.0"
    assert _env(services["llamacpp"])["RAG_CPU_SERVER__HOST"] == "0.0.0.0"


def test_replica_urls_example_points_at_replicas(model: dict[str, typing.Any]) -> None:
    line = next(x for x in ENV_EXAMPLE.read_text().splitlines() if x.startswith("# RAG_LLM__URLS="))
    urls = json.loads(line.split("=", 1)[1])
    assert len(urls) >= 2
    for url in urls:
        host, port = _url_target(url)
        assert host in model["services"] and port == _listen_port(host, model["services"][host])


def test_store_and_ui_wiring(model: dict[str, typing.Any]) -> None:
    services = model["services"]
    api, ingest = _env(services["api"]), _env(services["ingest"])
    assert _url_target(api["RAG_STORE__URL"]) == ("qdrant", 6333)
    store = {k: v for k, v in api.items() if k.startswith("RAG_STORE__")}
    assert store == {k: v for k, v in ingest.items() if k.startswith("RAG_STORE__")}
    api_port = _listen_port("api", services["api"])
    assert _url_target(_env(services["ui"])["RAG_UI__API_URL"]) == ("api", api_port)
    assert api["RAG_API__HOST"] == "0.0.0.0"


def _ui_field(name: str) -> typing.Any:
    from ui.settings import UISettings  # the UI's own settings (env prefix RAG_UI__)

    return UISettings.model_fields.get(name.removeprefix("RAG_UI__").lower())


def test_rag_variables_are_settings(model: dict[str, typing.Any]) -> None:
    for name, s in model["services"].items():
        for key, value in _env(s).items():
            if not key.startswith("RAG_"):
                continue
            info = _ui_field(key) if key.startswith("RAG_UI__") else settings_field(key)
            assert info is not None, f"{name}: {key} is no setting (core/settings.py, ui/settings.py)"
            if typing.get_origin(info.annotation) is list:
                # An empty string is no list: pass lists through only when .env sets them.
                assert value is None, f"{name}: {key} must be passed through, not given '{value}'"


def test_list_settings_are_passed_through(model: dict[str, typing.Any]) -> None:
    assert {"RAG_LLM__URLS", "RAG_API__KEYS", "RAG_UI__API_KEY"} <= pass_through(model)


def test_commands(model: dict[str, typing.Any]) -> None:
    services = model["services"]
    assert services["api"]["command"] == ["rag", "api"]
    assert services["llamacpp"]["command"] == ["rag", "serve", "cpu"]
    assert services["ingest"]["command"][:2] == ["rag", "ingest"]
    assert any(v.endswith(":/docs:ro") for v in services["ingest"]["volumes"])


def test_cli_has_the_commands_compose_runs() -> None:
    from typer.main import get_command

    from app.cli import app

    cli = get_command(app)
    commands = cli.commands  # type: ignore[attr-defined]
    assert "ingest" in commands
    missing = [c for c in ("api", "serve") if c not in commands]
    if missing:
        pytest.skip(f"rag {', '.join(missing)}: not in app/cli.py yet")
    assert "cpu" in commands["serve"].commands


# Where the containers deliberately differ from the settings' defaults, and why.
DELIBERATE = {
    "RAG_CPU_SERVER__THREADS": "a container gets more than the 1 thread tuned for the 2-core dev machine",
    "RAG_API__WORKERS": "with a Qdrant server the API can run several workers",
    "RAG_LLM__URL": "the LLM service of the active profile, not one started on demand",
}


def test_compose_defaults_are_the_settings_defaults() -> None:
    raw = load_yaml(COMPOSE)
    seen = 0
    for service in raw["services"].values():
        for key, value in (service.get("environment") or {}).items():
            m = re.fullmatch(r"\$\{(\w+):-(.*)\}", str(value))
            if not (m and m.group(1) == key and key.startswith("RAG_")) or key in DELIBERATE:
                continue
            info = settings_field(key)
            assert info is not None, key
            default = info.get_default(call_default_factory=True)
            assert m.group(2) == str(default), f"{key}: compose {m.group(2)!r}, settings {default!r}"
            seen += 1
    assert seen >= 5
    for key in DELIBERATE:
        assert settings_field(key) is not None, key


def test_router_fronts_every_replica_with_the_cache_aware_policy(model: dict[str, typing.Any]) -> None:
    from serving.router import render_command

    services = model["services"]
    front = services["router"]
    assert front["profiles"] == services["vllm-2"]["profiles"] == ["replicas"]
    cmd = front["command"]
    workers = cmd[cmd.index("--worker-urls") + 1:cmd.index("--policy")]
    replicas = [n for n in services if n.startswith("vllm")]
    assert sorted(_url_target(u) for u in workers) == sorted(
        (n, _listen_port(n, services[n])) for n in replicas)
    assert cmd == render_command(workers, port=8000, host="0.0.0.0", metrics_port=29000)[1:]
    assert set(front["depends_on"]) == set(replicas)
    assert all(d["condition"] == "service_healthy" for d in front["depends_on"].values())
    # The router probes each worker's /health before routing: vLLM's health check is that route.
    assert all(_health_url(services[n])[1] == "/health" for n in replicas)
    assert _health_url(front) == (_listen_port("router", front), "/health")


def test_router_url_example_points_at_the_router(model: dict[str, typing.Any]) -> None:
    lines = [x for x in ENV_EXAMPLE.read_text().splitlines() if x.startswith("# RAG_LLM__URL=")]
    targets = {_url_target(x.split("=", 1)[1]) for x in lines}
    services = model["services"]
    assert ("router", _listen_port("router", services["router"])) in targets
    assert "router" in services["api"]["depends_on"]
