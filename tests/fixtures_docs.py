"""Writers of small fixture documents, built inside each test's tmp dir (never read from
../shared): every supported format with known sentences, and the bad inputs ingestion must
refuse by name.

Each good writer returns the path it wrote; the known sentences are module constants so the
tests can look for them after loading, chunking and searching.
"""

from __future__ import annotations

import io
import os
import random
from dataclasses import dataclass
from pathlib import Path

# -- known content ----------------------------------------------------------------------------

PDF_TITLE = "Harbour Almanac"
PDF_PAGES: list[list[str]] = [
    [
        "The lighthouse keeper logged forty storms in the winter of 1887.",
        "Each storm was written down with its wind direction and the height of the waves.",
    ],
    [
        "Copper kettles were polished every Sunday in the harbour tavern.",
        "The tavern owner kept the brightest kettle on a shelf above the door.",
    ],
    [
        "A cartographer measured the northern glacier with a brass theodolite.",
        "Her survey showed the glacier had retreated by three hundred metres.",
    ],
]

DOCX_HEADING = "Quarterly Orchard Report"
DOCX_PARAGRAPHS = [
    "The orchard produced eleven tonnes of russet apples this quarter.",
    "Frost damaged the pear blossoms along the western wall in April.",
]
DOCX_TABLE = [["Fruit", "Tonnes", "Grade"], ["Apples", "11", "A"], ["Pears", "4", "B"]]

PPTX_SLIDES = [
    ("Migration of Arctic Terns", "Arctic terns fly from pole to pole every single year."),
    ("Feeding Grounds", "The terns feed on sand eels near the Farne Islands in summer."),
    ("Conservation", "Wardens count the nesting pairs on the islands each June."),
]
PPTX_NOTES = "Remember to mention the ringing programme started in 1913."

HTML_TITLE = "Volcano Field Notes"
HTML_BODY = [
    "The fumaroles on the eastern crater vented sulphur at dawn.",
    "Basalt columns near the caldera rim were photographed by the survey team.",
]
# Strings that sit in chrome and must never reach the text.
HTML_CHROME = [
    "trackingSecretToken",  # <script>
    "hiddenStyleRule",  # <style>
    "Navigation Menu Home Link",  # <nav> outside <main>
    "Breadcrumb Inner Nav Entry",  # <nav> inside <main>
    "Footer copyright notice",  # <footer>
    "noscript fallback banner",  # <noscript>
]

MD_TITLE = "Beekeeping Ledger"
MD_SENTENCE = "The beekeeper harvested forty jars of heather honey from the upper hives."
TXT_SENTENCE = "The bakery on Mill Street sells rye bread baked in a wood-fired oven."
CODE_FUNCTION = "compute_tidal_range"
CODE_SENTENCE = "Return the tidal range between the highest and the lowest water level."


# -- good documents ---------------------------------------------------------------------------

def write_pdf(path: Path, pages: list[list[str]] | None = None,
              title: str | None = PDF_TITLE) -> Path:
    """A PDF with one page per item of `pages`, each line drawn as real text."""
    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas

    pages = PDF_PAGES if pages is None else pages
    path.parent.mkdir(parents=True, exist_ok=True)
    c = canvas.Canvas(str(path), pagesize=letter)
    c.setTitle(title or "")  # reportlab's default title is "untitled"
    for lines in pages:
        y = 720
        c.setFont("Helvetica", 11)
        for line in lines:
            c.drawString(54, y, line)
            y -= 18
        c.showPage()
    c.save()
    return path


def write_textless_pdf(path: Path, pages: int = 2) -> Path:
    """A PDF whose pages hold only drawn shapes (like a scan without a text layer)."""
    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas

    path.parent.mkdir(parents=True, exist_ok=True)
    c = canvas.Canvas(str(path), pagesize=letter)
    for i in range(pages):
        c.rect(72 + 10 * i, 400, 200, 150, fill=1)
        c.circle(300, 300, 50 + 5 * i)
        c.showPage()
    c.save()
    return path


def write_docx(path: Path) -> Path:
    """A DOCX with a level-1 heading, two paragraphs and a 3x3 table (no title property)."""
    import docx

    path.parent.mkdir(parents=True, exist_ok=True)
    document = docx.Document()
    document.add_heading(DOCX_HEADING, level=1)
    for text in DOCX_PARAGRAPHS:
        document.add_paragraph(text)
    table = document.add_table(rows=len(DOCX_TABLE), cols=len(DOCX_TABLE[0]))
    for r, row in enumerate(DOCX_TABLE):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_paragraph("End of the orchard report.")
    document.save(str(path))
    return path


def write_pptx(path: Path) -> Path:
    """A deck of three title-and-content slides; the second has speaker notes."""
    from pptx import Presentation

    path.parent.mkdir(parents=True, exist_ok=True)
    deck = Presentation()
    layout = deck.slide_layouts[1]  # title and content
    for i, (title, body) in enumerate(PPTX_SLIDES):
        slide = deck.slides.add_slide(layout)
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        if i == 1:
            slide.notes_slide.notes_text_frame.text = PPTX_NOTES
    deck.save(str(path))
    return path


def html_source() -> str:
    script, style, nav_out, nav_in, footer, noscript = HTML_CHROME
    paras = "\n".join(f"    <p>{p}</p>" for p in HTML_BODY)
    return f"""<!DOCTYPE html>
<html>
<head>
  <title>{HTML_TITLE}</title>
  <style>.{style} {{ color: red; }}</style>
  <script>var {script} = "abc";</script>
</head>
<body>
  <nav><a href="/">{nav_out}</a></nav>
  <main>
    <nav>{nav_in}</nav>
    <h1>Field notes</h1>
{paras}
    <script>console.log("{script}");</script>
    <noscript>{noscript}</noscript>
    <ul><li>Ash sample one</li><li>Ash sample two</li></ul>
  </main>
  <footer>{footer}</footer>
</body>
</html>
"""


def write_html(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_source(), encoding="utf-8")
    return path


def write_markdown(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# {MD_TITLE}\n\n{MD_SENTENCE}\n\n## Hives\n\n"
        "- Hive one: calm colony\n- Hive two: swarmed in May\n\nSee the ledger for totals.\n",
        encoding="utf-8",
    )
    return path


def write_text(path: Path, text: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text is not None else
                    f"{TXT_SENTENCE}\n\nThe baker starts the fire at four in the morning.\n",
                    encoding="utf-8")
    return path


def write_code(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '"""Tide helpers."""\n\n\n'
        f"def {CODE_FUNCTION}(high: float, low: float) -> float:\n"
        f'    """{CODE_SENTENCE}"""\n'
        "    return high - low\n",
        encoding="utf-8",
    )
    return path


GOOD_WRITERS = {
    "almanac.pdf": write_pdf,
    "orchard.docx": write_docx,
    "terns.pptx": write_pptx,
    "volcano.html": write_html,
    "bees.md": write_markdown,
    "bakery.txt": write_text,
    "tides.py": write_code,
}
GOOD_TYPES = {
    "almanac.pdf": "pdf", "orchard.docx": "docx", "terns.pptx": "pptx", "volcano.html": "html",
    "bees.md": "markdown", "bakery.txt": "text", "tides.py": "code",
}
# One sentence of each good document that search must find.
GOOD_SENTENCES = {
    "almanac.pdf": PDF_PAGES[1][0],
    "orchard.docx": DOCX_PARAGRAPHS[1],
    "terns.pptx": PPTX_SLIDES[1][1],
    "volcano.html": HTML_BODY[0],
    "bees.md": MD_SENTENCE,
    "bakery.txt": TXT_SENTENCE,
    "tides.py": CODE_SENTENCE,
}


def write_good_corpus(root: Path) -> dict[str, Path]:
    """Every good format in `root`, by file name."""
    return {name: writer(root / name) for name, writer in GOOD_WRITERS.items()}


# -- bad inputs -------------------------------------------------------------------------------

def write_garbage_pdf(path: Path) -> Path:
    """A PDF header followed by random bytes: no xref, no objects."""
    rng = random.Random(1234)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"%PDF-1.7\n" + bytes(rng.randrange(256) for _ in range(4096)))
    return path


def write_truncated_pdf(path: Path) -> Path:
    """A real PDF cut off after its header and first bytes (no object survives whole)."""
    buf = io.BytesIO()
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(buf)
    c.drawString(72, 720, "This text is cut off with the rest of the file.")
    c.showPage()
    c.save()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[:120])
    return path


def write_encrypted_pdf(path: Path, password: str = "open-sesame") -> Path:
    """A PDF that needs a user password to be opened."""
    from pypdf import PdfReader, PdfWriter

    buf = io.BytesIO()
    write_pdf(path, [["Secret minutes of the harbour board meeting."]], title=None)
    writer = PdfWriter(clone_from=PdfReader(path))
    writer.encrypt(user_password=password, owner_password=password + "-owner")
    writer.write(buf)
    path.write_bytes(buf.getvalue())
    return path


def write_empty(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_binary_txt(path: Path) -> Path:
    """Binary bytes (NULs included) behind a .txt extension."""
    rng = random.Random(99)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" +
                     bytes(rng.randrange(256) for _ in range(2048)))
    return path


def write_unsupported(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x01 some proprietary format")
    return path


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def write_unreadable(path: Path) -> Path | None:
    """A file with mode 000, or None where permissions do not stop this process (root)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("You should not be able to read this.\n")
    path.chmod(0)
    try:
        with path.open("rb"):
            pass
    except PermissionError:
        return path
    path.chmod(0o644)
    path.unlink()
    return None


def write_unreadable_even_for_root(path: Path) -> Path | None:
    """A .txt symlink to /proc/self/mem: a regular file whose read fails with EIO for any
    user (offset 0 is never mapped). None where there is no /proc."""
    target = Path("/proc/self/mem")
    if not target.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def write_directory_named_txt(path: Path) -> Path:
    """A directory whose name ends in .txt (ingestion walks it as a folder)."""
    path.mkdir(parents=True)
    return path


def write_fifo(path: Path) -> Path:
    """A named pipe with a supported extension: reading it would block forever."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def write_broken_symlink(path: Path) -> Path:
    """A symlink to a file that does not exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(path.parent / "this-target-does-not-exist.txt")
    return path


@dataclass(frozen=True)
class Bad:
    """A bad input: its writer and words its failure reason must contain (any of them)."""

    name: str
    write: object
    reason: tuple[str, ...]


# Bad inputs that `load()` itself refuses from their bytes.
BAD_BYTES = [
    Bad("garbage.pdf", write_garbage_pdf, ("corrupt pdf",)),
    Bad("truncated.pdf", write_truncated_pdf, ("corrupt pdf",)),
    Bad("locked.pdf", write_encrypted_pdf, ("encrypted pdf", "password")),
    Bad("scan.pdf", write_textless_pdf, ("no text could be extracted", "scanned")),
    Bad("empty.txt", write_empty, ("empty file",)),
    Bad("image.txt", write_binary_txt, ("binary content",)),
    Bad("model.xyz", write_unsupported, ("unsupported file type", ".xyz")),
]


# -- bulk corpora -----------------------------------------------------------------------------

_WORDS = [
    "harbour", "lantern", "kettle", "glacier", "orchard", "bread", "ledger", "anchor", "compass",
    "tide", "river", "mill", "stone", "oak", "meadow", "copper", "signal", "ferry", "valley",
    "beacon", "granite", "willow", "market", "barley", "lighthouse", "cartographer", "weaver",
    "tannery", "quarry", "saddle", "furnace", "chapel", "orchardist", "pilgrim"
]


def distinct_sentences(rng: random.Random, n: int) -> list[str]:
    """`n` different sentences of 8-16 words (distinct, so no two chunks share a vector)."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 16))]
        s = " ".join(words).capitalize() + f" {rng.randint(1, 99999)}."
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def write_many_text_files(root: Path, files: int, sentences: int = 50,
                          seed: int = 0) -> list[Path]:
    """`files` text files of `sentences` distinct sentences each, in paragraphs of five."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        lines = distinct_sentences(rng, sentences)
        text = "\n\n".join(" ".join(lines[j:j + 5]) for j in range(0, len(lines), 5))
        path = root / f"notes-{i:03d}.txt"
        path.write_text(f"File number {i}.\n\n{text}\n", encoding="utf-8")
        paths.append(path)
    return paths
