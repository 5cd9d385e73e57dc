"""The UI's own settings (env `RAG_UI__<FIELD>`): where the REST API is and how to talk to it.

Deliberately separate from core/settings.py, so the UI image installs neither torch nor the
store: the UI knows the API's address and key, nothing else.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class UISettings(BaseSettings):
    """Every setting of the Streamlit UI. Env: RAG_UI__API_URL, RAG_UI__API_KEY, ..."""

    model_config = SettingsConfigDict(env_prefix="RAG_UI__", extra="ignore")

    api_url: str = Field("http://127.0.0.1:8080", description="Base URL of the RAG REST API.")
    api_key: str | None = Field(None, description="Key sent to the API (one of its RAG_API__KEYS).")
    connect_timeout_s: float = Field(3.0, gt=0, description="Connect timeout to the API.")
    timeout_s: float = Field(
        600.0, gt=0, description="Read timeout of one API call (an answer on a CPU can be slow).")
    poll_interval_s: float = Field(0.5, gt=0, description="How often an ingestion job is polled.")
    ingest_timeout_s: float = Field(
        1800.0, gt=0, description="How long the documents page waits for an ingestion job.")

    @field_validator("api_url")
    @classmethod
    def _no_trailing_slash(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if not v.startswith(("http://", "https://")):
            raise ValueError("api_url must start with http:// or https://")
        return v

    @field_validator("api_key")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v or None


def load_ui_settings() -> UISettings:
    """Builds the settings once per browser session (see ui/app.py)."""
    return UISettings()
