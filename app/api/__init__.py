"""The REST API (FastAPI): `create_app()` builds it, `rag api` serves it with uvicorn."""

from app.api.main import create_app

__all__ = ["create_app"]
