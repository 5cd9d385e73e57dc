"""Terminal output of the CLI: the ingest progress bar and summary table."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from app.terminal import middle_truncated, printable, printable_text, shown_paths
from ingest.pipeline import FileResult, IngestReport
from ingest.pipeline import Progress as PipelineProgress
from retrieval.packer import where


class IngestProgress(PipelineProgress):
    """A files bar plus a count of chunks embedded, drawn on stderr; while a file's scanned
    pages are read, a second bar counts its pages."""

    def __init__(self, console: Console, enabled: bool = True):
        self.enabled = enabled
        self.console = console
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(), console=console, transient=True, disable=not enabled,
        )
        self.task = self.bar.add_task("ingest", total=None, chunks=0, last="",
                                      detail=self._detail(0, ""))
        self.ocr_task = self.bar.add_task("ocr", total=None, visible=False, detail="")

    @staticmethod
    def _detail(chunks: int, last: str) -> str:
        return f"files · {chunks} chunks embedded · {last}"

    def __enter__(self) -> IngestProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.bar.__exit__(et, ev, tb)

    def start(self, total_files: int) -> None:
        self.bar.update(self.task, total=total_files)

    def found(self, documents: int) -> None:
        total = self.bar.tasks[0].total
        if total is not None:
            self.bar.update(self.task, total=total + documents)

    def file_done(self, result: FileResult) -> None:
        name = escape(printable(result.path.rsplit("/", 1)[-1][:40]))
        chunks = self.bar.tasks[0].fields["chunks"]
        self.bar.update(self.task, advance=1 if result.status != "removed" else 0, last=name,
                        detail=self._detail(chunks, name))
        self.bar.update(self.ocr_task, visible=False)

    def embedded(self, chunks: int) -> None:
        done = self.bar.tasks[0].fields["chunks"] + chunks
        self.bar.update(self.task, chunks=done,
                        detail=self._detail(done, self.bar.tasks[0].fields["last"]))

    def ocr_page(self, path: str, done: int, pages: int) -> None:
        name = escape(printable(path.rsplit("/", 1)[-1][:40]))
        self.bar.update(self.ocr_task, completed=done, total=pages, visible=done < pages,
                        detail=f"pages read · now page {done + 1} of {pages} · {name}")


def print_ingest_report(out: Console, err: Console, report: IngestReport) -> None:
    for r in report.results:
        path, reason = printable(r.path), printable(r.reason)
        if r.status == "failed":
            err.print(f"failed  {path}: {reason}", markup=False, soft_wrap=True)
        elif r.status == "skipped":
            err.print(f"skipped {path}: {reason}", markup=False, soft_wrap=True)
        elif r.status == "removed":
            out.print(f"removed {path}", markup=False, soft_wrap=True)
        # Ingested, with a bound hit (rows cut) or pages OCR could not read.
        for note in r.notes if r.status in ("new", "updated") else ():
            err.print(f"note    {path}: {printable(note)}", markup=False, soft_wrap=True)
    counts = "  ".join(f"{s} {report.count(s)}" for s in (
        "new", "updated", "unchanged", "removed", "skipped", "failed"))
    table = Table(show_header=False, show_edge=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("files", counts)
    table.add_row("chunks", f"{report.chunks:,} ({report.tokens:,} tokens)")
    if report.ocr_pages or report.ocr_cached:
        table.add_row("ocr", f"{report.ocr_pages + report.ocr_cached:,} pages "
                      f"({report.ocr_cached:,} from the cache)")
    table.add_row("seconds", f"{report.seconds:.1f}")
    out.print(table)
    if report.embedded == report.cached == 0:
        out.print("Nothing was embedded: every file is unchanged." if not report.failed
                  else "Nothing was embedded.")
    else:
        out.print(f"Embedded {report.embedded:,} chunks; {report.cached:,} came from the "
                  "embedding cache.")


def document_rows(docs: list[Any]) -> list[str]:
    """The documents as tab-separated lines (id, type, pages, chunks, tokens, ingested,
    source), for a pipe: whole absolute paths, control characters and tabs escaped."""
    return ["\t".join((d.document_id, d.type, str(d.pages or ""), str(d.chunks), str(d.tokens),
                       d.ingested_at, printable(d.source))) for d in docs]


NARROW = 100  # below this many columns the ingested date is left out of the table
_GAP = 2  # columns apart


def documents_table(docs: list[Any], width: int, cwd: str) -> tuple[str, Table]:
    """(the folder paths are shown under, the table) fitted to `width` columns: the source
    column takes what the others leave and long paths lose their middle, not their ends."""
    base, sources = shown_paths([d.source for d in docs], cwd)
    header = ["id", "type", "pages", "chunks", "tokens", "ingested"]
    rows = [[d.document_id, d.type, str(d.pages or ""), str(d.chunks), f"{d.tokens:,}",
             d.ingested_at[:10]] for d in docs]
    if width < NARROW:
        header, rows = header[:-1], [r[:-1] for r in rows]
    used = sum(max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header))
    room = max(width - used - _GAP * len(header), len("source"))
    table = Table(box=None, pad_edge=False, padding=(0, _GAP // 2), header_style="bold")
    for name in header:
        table.add_column(name, no_wrap=True, justify="right" if name in (
            "pages", "chunks", "tokens") else "left")
    table.add_column("source", no_wrap=True, overflow="ellipsis")
    for row, source in zip(rows, sources, strict=True):
        table.add_row(*row, escape(middle_truncated(printable(source), room)))
    return base, table


def stream_rows(out: Console, docs: Iterable[Any]) -> int:
    """Each document's tab-separated row as soon as it is read; how many were written."""
    written = 0
    for doc in docs:
        out.file.write(document_rows([doc])[0] + "\n")
        written += 1
    return written


def print_documents(out: Console, docs: list[Any], cwd: str) -> None:
    """The documents as a table on a terminal, as tab-separated rows in a pipe."""
    if not out.is_terminal:
        out.file.write("".join(line + "\n" for line in document_rows(docs)))  # rich expands tabs
        return
    base, table = documents_table(docs, out.width, cwd)
    if base and base != cwd:
        out.print(f"under {printable(base)}/", markup=False, style="dim", soft_wrap=True)
    out.print(table)


def print_retrieval(out: Console, result: Any, show_text: bool) -> None:
    """Passages and the ledger of one retrieval."""
    d = result.to_dict()
    b = d["budget"]
    if d["message"]:
        out.print(f"[yellow]{escape(printable(d['message']))}[/yellow]")
    for p in d["passages"]:
        page = escape(printable(where(p["page"], p.get("page_label"))))
        page += " · OCR" if p.get("ocr") else ""
        score = f"  score {p['score']:.4f}" if p["score"] is not None else ""
        out.print(f"[bold][{p['label']}][/bold] {escape(printable(p['source']))}{page}  "
                  f"({p['tokens']:,} tokens{score})", markup=True, highlight=False)
        if show_text:
            out.print(printable_text(p["text"]), markup=False)
            out.print()
    ledger = Table(show_header=False, show_edge=False, box=None, pad_edge=False)
    ledger.add_column(style="bold")
    ledger.add_column()
    ledger.add_row("budget", f"min({b['requested']:,} requested, {b['context_window']:,} window) "
                   f"− {b['answer_reserve']:,} answer − {b['prompt_tokens']:,} prompt "
                   f"= {b['available']:,} for passages")
    pct = 100 * d["used_tokens"] / b["available"] if b["available"] else 0.0
    ledger.add_row("used", f"{d['used_tokens']:,} tokens ({pct:.1f}%) in {len(d['passages'])} "
                   f"passages from {len(d['documents'])} documents")
    ledger.add_row("mode", f"{d['mode']} · layout {d['layout']} · search {d['search_mode']} "
                   f"· {d['candidates']} candidates · {d['seconds'] * 1000:.0f} ms")
    reasons: dict[str, int] = {}
    for item in d["left_out"]:
        reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
    if reasons:
        ledger.add_row("left out", ", ".join(f"{n} ({r})" for r, n in sorted(reasons.items())))
    out.print(ledger)


def print_unsupported(out: Console, answer: Any) -> None:
    """The sentences no cited passage holds, each with the reason."""
    flagged = [s for s in answer.sentences if s.support != "supported" and s.note]
    if not flagged:
        return
    out.print("\n[bold yellow]Not supported by the passages[/bold yellow]")
    for s in flagged:
        out.print(f"  ! {s.text}", markup=False, soft_wrap=True)
        out.print(f"    {s.support}: {s.note}", style="dim", markup=False, soft_wrap=True)


def print_citations(out: Console, answer: Any) -> None:
    """The answer's unsupported sentences and its sources under it; inferred sources say
    so, unknown markers are flagged."""
    print_unsupported(out, answer)
    if answer.citations:
        inferred = all(c.inferred for c in answer.citations)
        out.print("\n[bold]Sources[/bold]" + (" (inferred from the answer's wording: the model "
                                               "wrote no \\[n] markers)" if inferred else ""))
        for c in answer.citations:
            page = printable(where(c.page, c.page_label))
            page += " · OCR" if c.ocr else ""
            out.print(f"  [{c.label}] {printable(c.source)}{page}", markup=False, soft_wrap=True)
    else:
        out.print("\n[dim]No sources: the answer draws on none of the passages.[/dim]")
    if answer.invalid_citations:
        labels = ", ".join(f"[{n}]" for n in answer.invalid_citations)
        out.print(f"[yellow]note:[/yellow] the answer cites {escape(labels)}, which "
                  "no passage given to the model has; not shown as sources.")
    ledger = answer.retrieval
    usage = answer.usage
    cached = f", {usage['cached_tokens']:,} cached" if usage.get("cached_tokens") is not None else ""
    out.print(f"[dim]{answer.model} · context {ledger.packing.used_tokens:,} of "
              f"{ledger.budget.available:,} tokens in {len(ledger.packing.passages)} passages"
              f"{' (reused)' if answer.reused_context else ''} · prompt "
              f"{usage.get('prompt_tokens') or 0:,} tokens{cached} · "
              f"{usage.get('seconds', 0):.1f} s[/dim]")
