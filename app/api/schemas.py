"""Request and response models: they validate what comes in and document (in the OpenAPI
document) what goes out. Responses are built by the service's own `to_dict()`s; the models
here describe them without re-validating every answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.choices import ContextMode, Layout, SearchMode
from retrieval.service import MAX_QUESTION_CHARS

# Static bounds of the schema; the configured (api.*) limits are written into the served
# OpenAPI document and checked per request (app/api/main.py, routes_query.py).
MAX_HISTORY = 200
# Something besides whitespace, by every definition in play: Python's str.strip() (which the
# service applies) also strips \x1c-\x1f and \x85; JSON Schema's \s also matches \ufeff.
NOT_BLANK = r"[^\s\x1c-\x1f\x85\ufeff]"


def _encodable(value: Any) -> Any:
    """Lone surrogates (valid in JSON, not in UTF-8) would break every tokenizer."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return value


class _Text(BaseModel):
    @field_validator("*", mode="after")
    @classmethod
    def _utf8(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):
            for item in v:
                _encodable(item)
            return v
        return _encodable(v)


class HistoryMessage(_Text):
    """One earlier turn of the conversation (fields other than these are ignored)."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["user", "assistant"]
    content: str = Field(max_length=200_000)


class FiltersIn(_Text):
    """Restrict the search to some documents."""

    model_config = ConfigDict(extra="forbid")
    document_ids: list[str] = Field(default_factory=list, max_length=1000,
                                    description="Only these document ids.")
    path: str | None = Field(None, max_length=4096,
                             description="Source path prefix, or a glob when it has * ? [ "
                             "(a relative glob matches the path's end).")
    types: list[str] = Field(default_factory=list, max_length=32,
                             description="Only these types: pdf, docx, pptx, html, markdown, "
                                         "text, code.")


class RetrieveRequest(_Text):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS, pattern=NOT_BLANK,
                          description="The question.")
    history: list[HistoryMessage] = Field(
        default_factory=list, max_length=MAX_HISTORY,
        description="Earlier turns, oldest first; pass the assistant's answers back unchanged "
                    "so a follow-up can reuse the packed context (prefix cache).")
    filters: FiltersIn | None = None
    budget_tokens: int | None = Field(None, description="Requested context budget in tokens "
                                                        "(default: retrieval.budget_tokens).")
    layout: Layout | None = Field(None, description="Passage order in the context.")
    mode: SearchMode | None = Field(None, description="Search: hybrid, dense or keyword.")
    context: ContextMode | None = Field(
        None, description="auto: whole documents when they fit; full: whole documents; "
                          "retrieve: always search.")


class QueryRequest(RetrieveRequest):
    stream: bool = Field(False, description="Server-sent events: retrieval, delta..., done "
                                            "(or error).")


# -- responses (documentation) ----------------------------------------------------------------
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class BudgetOut(_Open):
    requested: int
    context_window: int
    answer_reserve: int
    prompt_tokens: int
    available: int


class _Labelled(_Open):
    """A numbered passage: where it comes from and its text."""

    label: int
    document_id: str
    source: str
    title: str | None = None
    page: int | None = None
    page_label: str | None = None
    text: str
    ocr: bool = Field(False, description="The passage's page was read by OCR (a scan or an image).")


class PassageOut(_Labelled):
    chunks: list[int] = Field(description="First and last chunk index of the passage.")
    tokens: int
    score: float | None = None


class LeftOutOut(_Open):
    reason: str = Field(description="budget, duplicate or filter.")
    document_id: str
    source: str
    page: int | None = None
    chunk_index: int | None = None
    tokens: int = Field(0, description="What it would have added (0 for a filtered document).")
    score: float | None = None


class DocumentTokensOut(_Open):
    """One document's share of the context."""

    document_id: str
    source: str
    title: str | None = None
    passages: int
    tokens: int


class Ledger(_Open):
    """What went into the context and what was left out."""

    budget: BudgetOut
    used_tokens: int
    passages: list[PassageOut]
    left_out: list[LeftOutOut]
    mode: str
    layout: str
    search_mode: str
    candidates: int
    documents: list[DocumentTokensOut]
    tokenizer: str = Field(description="The tokenizer the context was counted with.")
    seconds: float = Field(description="Time spent retrieving and packing.")
    message: str
    notes: list[str] = Field(default_factory=list, description="Why the packing chose what it "
                             "did (coverage, sub-queries searched, narrowed neighbours, a "
                             "follow-up's kept context), one line each.")


class AnswerLedger(Ledger):
    """The ledger of an answer: also the text searched for and whether a follow-up kept the
    previous context."""

    search_query: str = Field(description="The text searched for (a follow-up's carries the "
                              "previous question).")
    reused_context: bool = Field(description="A follow-up answered from the previous context.")


class RetrieveResponse(Ledger):
    context: str = Field(description="The packed context exactly as the model reads it.")


class CitationOut(_Labelled):
    quote: str
    quote_start: int
    quote_end: int
    inferred: bool


class EvidenceOut(BaseModel):
    label: int = Field(description="The passage that holds the sentence.")
    quote: str = Field(description="Its sentence closest to the checked one.")


class SentenceOut(BaseModel):
    """One sentence of the answer, checked against the passages it cites."""

    text: str
    start: int = Field(description="Character offsets of the sentence in the answer.")
    end: int
    citations: list[int] = Field(description="Labels it cites ([n] markers, or the passage "
                                             "found to hold it when it has none).")
    inferred: bool = Field(description="The sentence has no marker: `citations` is the app's.")
    support: Literal["supported", "unsupported", "uncited"]
    evidence: EvidenceOut | None = Field(description="For a supported sentence.")
    missing: list[str] = Field(description="Numbers, dates and names the closest cited "
                                           "passage lacks.")
    not_in_context: list[str] = Field(description="Numbers, dates and names in no passage "
                                                  "of the context.")
    note: str = Field(description="Why it is not supported, in a line (empty when it is).")
    held_by: int | None = Field(None, description="Unsupported: a passage it does not cite "
                                                  "that holds it (a wrong marker).")
    word_share: float = Field(description="Share of its content words in the passage.")
    similarity: float = Field(description="Cosine similarity (MiniLM) to the passage's "
                                          "closest sentence.")


class AnswerOut(_Open):
    answer: str
    citations: list[CitationOut]
    invalid_citations: list[int]
    ledger: AnswerLedger
    usage: dict[str, Any]
    model: str
    finish_reason: str | None = None
    sentences: list[SentenceOut] = Field(default_factory=list, description="Each sentence "
                                         "of the answer with its support verdict.")


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class DocumentOut(BaseModel):
    document_id: str
    source: str
    title: str
    type: str
    pages: int | None = None
    chunks: int
    tokens: int
    ingested_at: str


class DocumentList(BaseModel):
    data: list[DocumentOut]
    total: int = Field(description="Every stored document (not only this page's).")
    next_cursor: str | None = Field(
        None, description="With `limit`: pass as `cursor` for the next page; null after the last.")


class Deleted(BaseModel):
    deleted: DocumentOut


class FileResultOut(BaseModel):
    path: str
    status: Literal["new", "updated", "unchanged", "failed", "skipped", "removed"]
    reason: str
    document_id: str
    chunks: int
    notes: list[str] = Field(default_factory=list, description="What was left out of a file that "
                             "ingested (pages OCR could not read, pages over a limit).")


class JobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    files_total: int
    files_done: int
    chunks_embedded: int
    chunks_cached: int = Field(0, description="Of chunks_embedded, those whose vectors came from "
                               "the embedding cache (text seen before: nothing computed).")
    results: list[FileResultOut]
    error: str | None = None
    created_at: float
    finished_at: float | None = None


class JobAccepted(BaseModel):
    job: JobOut


class LeftoverOut(BaseModel):
    name: str = Field(description="The file's name in the uploads folder.")
    size: int
    modified_at: float
    reason: str | None = Field(description="Why its ingest failed, when a job said so.")


class LeftoverList(BaseModel):
    data: list[LeftoverOut]


class LeftoversDeleted(BaseModel):
    deleted: list[str]


class Defaults(BaseModel):
    budget_tokens: int
    layout: Layout
    mode: SearchMode
    context: ContextMode


class Limits(BaseModel):
    max_question_chars: int
    min_budget_tokens: int
    max_budget_tokens: int
    max_body_mb: float
    max_upload_mb: float
    max_files_per_upload: int
    max_history: int
    upload_types: list[str]


class Choices(BaseModel):
    """Every value each option accepts (the UI draws its controls from these)."""

    layout: list[Layout]
    mode: list[SearchMode]
    context: list[ContextMode]


class ConfigOut(BaseModel):
    context_window: int
    model: str
    defaults: Defaults
    choices: Choices
    limits: Limits
    auth: bool


class Health(BaseModel):
    status: str


class Check(BaseModel):
    ok: bool
    detail: str


class Readiness(_Open):
    status: Literal["ready", "not_ready"]
    checks: dict[str, Check]
    checked_s_ago: float = Field(description="seconds since the checks ran (in the background)")


# -- OpenAI-compatible chat --------------------------------------------------------------------
class ContentPart(_Open):
    type: str
    text: str | None = None


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type in ("text", "input_text"))
        return self.content or ""


class StreamOptions(_Open):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request. The last user message is the question, earlier user
    and assistant messages are the history; system and developer messages are ignored (the
    RAG system prompt with the passages takes their place). Sampling fields are accepted and
    ignored (the server's llm.* settings apply). RAG fields may be added (extra_body)."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(None, description="Accepted and ignored: the served model answers.")
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_HISTORY + 50)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=1, description="Only 1 is supported.")
    budget_tokens: int | None = Field(None, description="RAG: requested context budget.")
    layout: Layout | None = None
    mode: SearchMode | None = None
    context: ContextMode | None = None
    filters: FiltersIn | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    context_window: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatChoiceMessage
    finish_reason: str | None = None
    logprobs: Any = None


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage
    citations: list[CitationOut] = Field(description="RAG: the passages the answer cites.")
    ledger: AnswerLedger = Field(description="RAG: what went into the context.")
    sentences: list[SentenceOut] = Field(default_factory=list,
                                         description="RAG: each sentence, checked.")
