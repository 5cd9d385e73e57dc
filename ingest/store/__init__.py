"""The store interface and the factory that picks Qdrant Edge or a Qdrant server."""

from __future__ import annotations

from core.settings import Settings
from ingest.store.base import LIVE, STAGED, PointIn, PointOut, Sparse, Store, Where

__all__ = ["LIVE", "STAGED", "PointIn", "PointOut", "Sparse", "Store", "Where", "open_store"]


def open_store(settings: Settings) -> Store:
    """The Qdrant server when `store.url` is set, else the embedded Qdrant Edge store."""
    s = settings.store
    if s.url:
        from ingest.store.server import ServerStore

        return ServerStore.connect(s.url, s.api_key, s.collection, s.timeout_s,
                                   shard_number=s.shard_number,
                                   replication_factor=s.replication_factor,
                                   hnsw_m=s.hnsw_m, hnsw_ef_construct=s.hnsw_ef_construct)
    from ingest.store.edge import EdgeStore

    return EdgeStore(settings.store_path, s.hnsw_m, s.hnsw_ef_construct, s.segment_points)
