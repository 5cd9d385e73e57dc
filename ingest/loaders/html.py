"""HTML with BeautifulSoup: the page's main content, headings kept as Markdown headings."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.loaders.base import LoadedDocument, Section, decode_text

_DROP_TAGS = ["script", "style", "noscript", "template", "svg", "canvas", "iframe", "head"]
_CHROME_TAGS = ["nav", "footer", "aside", "form"]
# XHTML (an EPUB chapter, an SEC filing) opens with an XML declaration. The lenient HTML
# parser reads it as browsers do, but BeautifulSoup warns on the declaration (a multi-line
# XMLParsedAsHTMLWarning in the user's terminal). An HTML parser ignores the declaration
# anyway, so it goes before parsing: no global warning filter, which would race with the
# parse thread, and no strict XML parser, which drops the rest of a slightly broken file.
_XML_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*>")


def load_html(path: Path, data: bytes) -> LoadedDocument:
    from bs4 import BeautifulSoup

    text = _XML_DECLARATION.sub("", decode_text(data), count=1)
    soup = BeautifulSoup(text, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(_DROP_TAGS):
        tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    for tag in root(_CHROME_TAGS):
        tag.decompose()
    if not title:
        h1 = root.find("h1")
        title = h1.get_text(" ", strip=True) if h1 else ""
    for br in root.find_all("br"):
        br.replace_with("\n")
    for tag in root.find_all(_BLOCK_TAGS):
        level = tag.name[1:] if tag.name in _HEADINGS else ""
        tag.insert_before("\n\n" + ("#" * int(level) + " " if level else ""))
        tag.insert_after("\n\n" if tag.name not in ("li", "tr", "td", "th") else "\n")
    lines = (" ".join(line.split()) for line in root.get_text().split("\n"))
    return LoadedDocument(title=title, type="html", sections=[Section("\n".join(lines))])


_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCK_TAGS = [
    "p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "pre",
    "blockquote", "table", "tr", "td", "th", "figure", "figcaption", "header", "address",
    *_HEADINGS,
]


