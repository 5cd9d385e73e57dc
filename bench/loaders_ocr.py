"""OCR engines side by side on pages whose text is known: character accuracy and pages/s.

Pages: every page of the PDFs under --data with a text layer of at least --min-chars
characters (at most --pages of them, spread over the files), plus two pages this script
writes with reportlab. Each page is drawn by the PDF loader's own renderer (grey, at each
--dpi) and read by each engine of ingest/ocr.py, engines interleaved page by page so other
load on the machine hits them alike. The page's text layer is the reference.

Rows:
  text layer      the PDF loader's text extraction on the same pages: the baseline a page
                  with a text layer gets (pages/s; accuracy 1 by definition)
  render          drawing the pages for OCR (the loader's renderer), per dpi
  ENGINE @ DPI    OCR alone (rendering excluded): pages/s, character accuracy
                  (1 - normalized Levenshtein distance on whitespace-collapsed text, mean
                  over pages) and word recall (share of the reference's words found,
                  order-free: what keyword search and the embedder see)

    .venv/bin/python bench/loaders_ocr.py --data ../shared/data/docs
    .venv/bin/python bench/loaders_ocr.py --data ../shared/data/docs --pages 6 --dpi 200

Needs both engines: Debian's tesseract-ocr + tesseract-ocr-eng, and rapidocr-onnxruntime
(`pip install rapidocr-onnxruntime`); a missing one is reported and its rows skipped.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import RESULTS, log, table

from core.errors import LoadError
from ingest.loaders import load
from ingest.ocr import OcrEngine, make_engine


@dataclass
class Page:
    name: str  # file · page
    reference: str  # its text layer
    render: Any  # (page, dpi) -> image
    number: int


@dataclass
class Row:
    what: str
    dpi: int | None
    seconds: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)

    def pages_per_s(self) -> float:
        total = sum(self.seconds)
        return len(self.seconds) / total if total else float("nan")


# -- pages ------------------------------------------------------------------------------------

def text_layer_pages(data: Path, min_chars: int, limit: int) -> list[Page]:
    """Pages with a text layer of at least `min_chars`, round robin over the PDFs."""
    per_file: list[list[Page]] = []
    for path in sorted(data.glob("*.pdf")):
        doc = load(path, path.read_bytes())
        pages = [Page(f"{path.name} · {s.page}", s.text, doc.render, int(s.page or 0))
                 for s in doc.sections if len(s.text) >= min_chars]
        per_file.append(pages)
    chosen: list[Page] = []
    while len(chosen) < limit and any(per_file):
        for pages in per_file:
            if pages and len(chosen) < limit:
                chosen.append(pages.pop(0))
    return chosen


_PROSE = (
    "The harbour master kept a ledger of every ship that entered the bay, noting its cargo, "
    "its crew and the hour of the tide. In the winter of 1887 the ledger records forty-two "
    "arrivals, most of them colliers from the northern coast. The lighthouse keeper's "
    "daughter, who later wrote a history of the town, counted eleven wrecks on the reef "
    "between 1850 and 1900; three of them left no survivors. Prices in the market rose by "
    "a third when the railway reached the valley in 1862, and the old ferry closed soon after."
)


def reportlab_pages(work: Path) -> list[Page]:
    """Two letter pages of prose in two fonts, written here (their text layer is exact)."""
    from reportlab.lib.pagesizes import letter
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate

    path = work / "reportlab.pdf"
    styles = getSampleStyleSheet()
    serif = styles["Normal"].clone("serif", fontName="Times-Roman", fontSize=11, leading=14)
    sans = styles["Normal"].clone("sans", fontName="Helvetica", fontSize=10, leading=13)
    story: list[Any] = [Paragraph(_PROSE, serif) for _ in range(4)]
    story += [PageBreak(), *[Paragraph(_PROSE, sans) for _ in range(4)]]
    SimpleDocTemplate(str(path), pagesize=letter).build(story)
    doc = load(path, path.read_bytes())
    return [Page(f"reportlab · {s.page}", s.text, doc.render, int(s.page or 0))
            for s in doc.sections]


# -- measures ---------------------------------------------------------------------------------

def normalized(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"')
    return " ".join(text.replace("\u201d", '"').split())


def char_accuracy(found: str, reference: str) -> float:
    from rapidfuzz.distance import Levenshtein

    return float(Levenshtein.normalized_similarity(normalized(found), normalized(reference)))


_WORD = re.compile(r"\w+")


def word_recall(found: str, reference: str) -> float:
    want = Counter(w.lower() for w in _WORD.findall(normalized(reference)))
    got = Counter(w.lower() for w in _WORD.findall(normalized(found)))
    total = sum(want.values())
    return sum((want & got).values()) / total if total else 1.0


def measure_text_layer(data: Path, pages: list[Page]) -> Row:
    """The loader's text extraction of the same files, per page (the baseline)."""
    row = Row("text layer", None)
    names = {p.name.split(" · ")[0] for p in pages if not p.name.startswith("reportlab")}
    for name in sorted(names):
        raw = (data / name).read_bytes()
        started = time.perf_counter()
        doc = load(data / name, raw)
        elapsed = time.perf_counter() - started
        n = doc.pages or 1
        row.seconds.extend([elapsed / n] * n)
    row.accuracy.append(1.0)
    row.recall.append(1.0)
    return row


def measure(engines: dict[str, OcrEngine], pages: list[Page], dpis: list[int],
            timeout_s: float) -> list[Row]:
    """Render rows and one row per engine and dpi; engines interleaved on each page."""
    rows: dict[tuple[str, int], Row] = {}
    for dpi in dpis:
        rows[("render", dpi)] = Row("render", dpi)
        for name in engines:
            rows[(name, dpi)] = Row(name, dpi)
    for page in pages:
        for dpi in dpis:
            started = time.perf_counter()
            image = page.render(page.number, dpi)
            rows[("render", dpi)].seconds.append(time.perf_counter() - started)
            for name, engine in engines.items():
                started = time.perf_counter()
                text = engine.read(image, timeout_s)
                row = rows[(name, dpi)]
                row.seconds.append(time.perf_counter() - started)
                row.accuracy.append(char_accuracy(text, page.reference))
                row.recall.append(word_recall(text, page.reference))
            log(f"  {page.name} @ {dpi} dpi: " + ", ".join(
                f"{n} {rows[(n, dpi)].accuracy[-1]:.3f}" for n in engines))
    return list(rows.values())


def available_engines(names: list[str]) -> dict[str, OcrEngine]:
    engines: dict[str, OcrEngine] = {}
    for name in names:
        try:
            engines[name] = make_engine(name)
        except LoadError as exc:
            log(f"skipped {name}: {exc}")
    return engines


def warm_up(engines: dict[str, OcrEngine], page: Page) -> None:
    """One read each before timing (RapidOCR's first call builds its ONNX sessions)."""
    image = page.render(page.number, 100)
    for engine in engines.values():
        engine.read(image, 120)


# -- output -----------------------------------------------------------------------------------

def print_rows(rows: list[Row]) -> None:
    base = next(r for r in rows if r.what == "text layer")
    body = []
    for r in rows:
        scored = r.what not in ("render",)
        body.append([
            r.what, r.dpi or "", len(r.seconds), f"{r.pages_per_s():.2f}",
            f"{statistics.mean(r.accuracy):.3f}" if scored and r.accuracy else "",
            f"{statistics.mean(r.recall):.3f}" if scored and r.recall else "",
            f"{r.pages_per_s() / base.pages_per_s():.4f}" if r is not base else "1",
        ])
    print(table(["row", "dpi", "pages", "pages/s", "char acc", "word recall", "vs text layer"],
                body))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder with PDFs that have a text layer")
    ap.add_argument("--pages", type=int, default=12, help="most pages taken from --data (default 12)")
    ap.add_argument("--min-chars", type=int, default=300, help="shortest text layer of a page taken")
    ap.add_argument("--dpi", default="200,300", help="resolutions pages are drawn at (default 200,300)")
    ap.add_argument("--engines", default="tesseract,rapidocr", help="engines of ingest/ocr.py")
    ap.add_argument("--timeout", type=float, default=300.0, help="time limit of one page")
    ap.add_argument("--out", type=Path, default=RESULTS / "loaders_ocr.json", help="results file")
    args = ap.parse_args(argv)

    engines = available_engines(args.engines.split(","))
    if not engines:
        log("no OCR engine is installed")
        return 1
    dpis = [int(d) for d in args.dpi.split(",")]
    with tempfile.TemporaryDirectory() as work:
        pages = text_layer_pages(args.data, args.min_chars, args.pages) + reportlab_pages(Path(work))
        log(f"{len(pages)} pages, engines {', '.join(engines)}, dpi {dpis}")
        warm_up(engines, pages[0])
        rows = [measure_text_layer(args.data, pages), *measure(engines, pages, dpis, args.timeout)]
    print_rows(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([{
        "row": r.what, "dpi": r.dpi, "pages": len(r.seconds), "pages_per_s": r.pages_per_s(),
        "char_accuracy": statistics.mean(r.accuracy) if r.accuracy else None,
        "word_recall": statistics.mean(r.recall) if r.recall else None,
        "engine": getattr(engines.get(r.what), "name", None),
    } for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
