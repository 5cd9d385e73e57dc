"""docker-compose.cluster.yml merged onto docker-compose.yml: a 3-node Qdrant cluster, and the
collection layout (shards, replicas) the API and the ingest workers create the collection with."""

from __future__ import annotations

import typing

import pytest
from deploy_helpers import CLUSTER, COMPOSE, compose, load_yaml

NODES = 3


@pytest.fixture(scope="module")
def model() -> dict[str, typing.Any]:
    return compose(COMPOSE, CLUSTER)


def _peers(model: dict[str, typing.Any]) -> dict[str, typing.Any]:
    return {n: s for n, s in model["services"].items() if s.get("image", "").startswith("qdrant/")}


def _flag(cmd: list[str], flag: str) -> str | None:
    return cmd[cmd.index(flag) + 1] if flag in cmd else None


def test_override_only_touches_known_services() -> None:
    base = set(load_yaml(COMPOSE)["services"])
    over = load_yaml(CLUSTER)["services"]
    assert set(over) - base == {"qdrant-2", "qdrant-3"}


def test_three_peers_in_distributed_mode(model: dict[str, typing.Any]) -> None:
    peers = _peers(model)
    assert set(peers) == {"qdrant", "qdrant-2", "qdrant-3"}
    base = compose(COMPOSE)["services"]["qdrant"]
    for name, s in peers.items():
        env = s["environment"]
        assert env["QDRANT__CLUSTER__ENABLED"] == "true", name
        assert env["QDRANT__CLUSTER__P2P__PORT"] == "6335", name
        assert "QDRANT__SERVICE__API_KEY" in env and env["QDRANT__SERVICE__API_KEY"] is None, name
        assert s["image"] == base["image"], name
        assert s["healthcheck"] == base["healthcheck"], name


def test_first_peer_and_bootstrap(model: dict[str, typing.Any]) -> None:
    peers = _peers(model)
    first = [n for n, s in peers.items() if _flag(s["command"], "--bootstrap") is None]
    assert first == ["qdrant"]  # the service the API and the host already talk to
    first_uri = _flag(peers["qdrant"]["command"], "--uri")
    assert first_uri == "http://qdrant:6335"
    for name, s in peers.items():
        assert s["command"][0] == "./qdrant"
        assert _flag(s["command"], "--uri") == f"http://{name}:6335", name
        if name != "qdrant":
            assert _flag(s["command"], "--bootstrap") == first_uri, name
            assert s["depends_on"]["qdrant"]["condition"] == "service_healthy", name


def test_each_peer_has_its_own_storage(model: dict[str, typing.Any]) -> None:
    sources = []
    for name, s in _peers(model).items():
        storage = [v for v in s["volumes"] if v.endswith(":/qdrant/storage")]
        assert len(storage) == 1, name
        sources.append(storage[0].split(":")[0])
        assert sources[-1] in model["volumes"], name
    assert len(set(sources)) == NODES


def test_p2p_port_stays_inside(model: dict[str, typing.Any]) -> None:
    for name, s in _peers(model).items():
        assert not any(p.endswith(":6335") for p in s.get("ports", [])), name
    assert [n for n, s in _peers(model).items() if s.get("ports")] == ["qdrant"]


def test_collection_layout_survives_one_node_down(model: dict[str, typing.Any]) -> None:
    for name in ("api", "ingest"):
        env = model["services"][name]["environment"]
        shards, replicas = int(env["RAG_STORE__SHARD_NUMBER"]), int(env["RAG_STORE__REPLICATION_FACTOR"])
        assert replicas == 2
        assert replicas <= NODES
        assert shards >= NODES and shards % NODES == 0  # even spread, room to add nodes
        assert env["RAG_STORE__URL"] == "http://qdrant:6333"
    single = compose(COMPOSE)["services"]["api"]["environment"]
    assert single["RAG_STORE__SHARD_NUMBER"] == "1" and single["RAG_STORE__REPLICATION_FACTOR"] == "1"


def test_writers_wait_for_every_peer(model: dict[str, typing.Any]) -> None:
    for name in ("api", "ingest"):
        deps = model["services"][name]["depends_on"]
        for peer in _peers(model):
            assert deps[peer]["condition"] == "service_healthy", f"{name} does not wait for {peer}"
