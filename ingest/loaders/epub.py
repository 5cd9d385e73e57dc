"""EPUB books: container.xml → the OPF package → its spine, one section per chapter in
reading order, each chapter's XHTML read by the HTML loader.

Written on zipfile and lxml rather than ebooklib (AGPL): the glue is the three look-ups the
format defines, and every zip member is read under check_zip's bounds.
"""

from __future__ import annotations

import posixpath
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from core.errors import LoadError
from ingest.loaders.base import LoadedDocument, LoadOptions, Section, check_zip, read_member
from ingest.loaders.html import load_html

_XHTML_TYPES = {"application/xhtml+xml", "text/html", "application/xml"}


def _xml(data: bytes, name: str) -> Any:
    from lxml import etree

    # No entity expansion, no network: an EPUB is untrusted input.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise LoadError(f"corrupt EPUB: {name} is not XML ({exc})") from None
    if root is None:
        raise LoadError(f"corrupt EPUB: {name} is not XML")
    return root


def _find(root: Any, xpath: str) -> list[Any]:
    return list(root.xpath(xpath))


def _member_path(base: str, href: str) -> str:
    return posixpath.normpath(posixpath.join(base, unquote(href.split("#", 1)[0])))


class _Book:
    """The parts of one EPUB that reading it needs: its OPF's metadata, manifest and spine."""

    def __init__(self, archive: zipfile.ZipFile):
        self.archive = archive
        container = _xml(read_member(archive, "META-INF/container.xml", "EPUB"), "container.xml")
        paths = _find(container, "//*[local-name()='rootfile']/@full-path")
        if not paths:
            raise LoadError("corrupt EPUB: container.xml names no package (OPF) file")
        self.opf_path = str(paths[0])
        self.base = posixpath.dirname(self.opf_path)
        self.opf = _xml(read_member(archive, self.opf_path, "EPUB"), self.opf_path)
        self.manifest = {
            str(item.get("id")): (self._path(str(item.get("href") or "")),
                                  str(item.get("media-type") or ""),
                                  str(item.get("properties") or ""))
            for item in _find(self.opf, "//*[local-name()='manifest']/*[local-name()='item']")
        }

    def _path(self, href: str) -> str:
        return _member_path(self.base, href)

    def title(self) -> str:
        titles = _find(self.opf, "//*[local-name()='metadata']/*[local-name()='title']")
        return " ".join("".join(titles[0].itertext()).split()) if titles else ""

    def spine(self) -> list[str]:
        """The member paths of the chapters, in reading order."""
        ids = _find(self.opf, "//*[local-name()='spine']/*[local-name()='itemref']/@idref")
        chapters = []
        for idref in ids:
            path, media_type, _ = self.manifest.get(str(idref), ("", "", ""))
            if path and media_type in _XHTML_TYPES:
                chapters.append(path)
        return chapters

    def toc_labels(self) -> dict[str, str]:
        """Chapter path → its title in the table of contents (EPUB 3 nav, else EPUB 2 NCX)."""
        labels: dict[str, str] = {}
        for path, media_type, properties in self.manifest.values():
            if "nav" in properties.split():
                nav = _xml(read_member(self.archive, path, "EPUB"), path)
                base = posixpath.dirname(path)
                for a in _find(nav, "//*[local-name()='nav']//*[local-name()='a'][@href]"):
                    href = _member_path(base, str(a.get("href")))
                    labels.setdefault(href, " ".join("".join(a.itertext()).split()))
            elif media_type == "application/x-dtbncx+xml":
                ncx = _xml(read_member(self.archive, path, "EPUB"), path)
                base = posixpath.dirname(path)
                for point in _find(ncx, "//*[local-name()='navPoint']"):
                    src = _find(point, "./*[local-name()='content']/@src")
                    text = _find(point, "./*[local-name()='navLabel']/*[local-name()='text']")
                    if src and text:
                        label = " ".join("".join(text[0].itertext()).split())
                        labels.setdefault(_member_path(base, str(src[0])), label)
        return labels


def load_epub(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    book = _Book(check_zip(data, "EPUB", int(options.max_unzipped_mb * 2**20)))
    chapters = book.spine()
    if not chapters:
        raise LoadError("corrupt EPUB: the spine lists no chapters")
    labels = book.toc_labels()
    sections = []
    for number, member in enumerate(chapters, start=1):
        chapter = load_html(Path(member), read_member(book.archive, member, "EPUB"))
        text = chapter.sections[0].text.strip() if chapter.sections else ""
        label = labels.get(member) or chapter.title
        if text and label and not text.startswith("#"):
            text = f"# {label}\n\n{text}"
        sections.append(Section(text, number))
    return LoadedDocument(title=book.title(), type="epub", sections=sections,
                          pages=len(sections))
