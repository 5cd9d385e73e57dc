"""`rag ingest` in a subprocess on a file of every format, new and old: what reaches the
user's terminal is the report alone — no third-party warning, log line or traceback (the
XHTML filing, which made BeautifulSoup warn, is among them)."""

from __future__ import annotations

from pathlib import Path

import fixtures_docs as F
import fixtures_formats as FF
import pytest
from ingest_helpers import rag

from core.settings import Settings


def write_every_format(root: Path) -> dict[str, Path]:
    files = F.write_good_corpus(root)
    pdf = F.write_pdf(root.parent / "estimate.pdf", [[FF.MAIL_ATTACHMENT_SENTENCE]]).read_bytes()
    writers = {"salt.epub": FF.write_epub, "mill.odt": FF.write_odt, "glass.odp": FF.write_odp,
               "ledger.rtf": FF.write_rtf, "tides.ipynb": FF.write_notebook,
               "ferry.xhtml": FF.write_xhtml}
    files.update({name: write(root / name) for name, write in writers.items()})
    files["budget.eml"] = FF.write_eml(root / "budget.eml", pdf=pdf)
    files["keepers.mbox"] = FF.write_mbox(root / "keepers.mbox", [FF.mail_message()])
    return files


@pytest.mark.slow  # the subprocess loads the embedding model
def test_ingest_of_every_format_prints_no_third_party_output(tmp_path: Path,
                                                             settings: Settings) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    files = write_every_format(docs)
    done = rag("ingest", docs, data_dir=settings.data_dir, cwd=tmp_path, settings=settings,
               timeout=300)
    assert done.returncode == 0, done.stderr
    # The one line expected: the e-mail's drawing, an unsupported attachment.
    assert done.stderr.splitlines() == [f"skipped {docs / 'budget.eml'}#plan.dwg: "
                                        "unsupported file type '.dwg'"], done.stderr
    for noise in ("Warning", "warn", "Traceback", "DEBUG", "INFO", "WARNING"):
        assert noise not in done.stdout, done.stdout
    # Every file, plus the attachment and the mailbox's message, is new.
    assert f"new {len(files) + 2}" in done.stdout, done.stdout


def test_bad_files_of_the_new_formats_fail_in_one_line_each(tmp_path: Path,
                                                            settings: Settings) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    bad = {
        "bomb.docx": FF.zip_bomb("word/document.xml"),
        "bomb.epub": FF.zip_bomb("META-INF/container.xml"),
        "cut.odt": FF.epub_bytes()[:3000],
        "broken.ipynb": b'{"cells": [',
        "junk.eml": b"\x00\x01 not mail",
        "plain.rtf": b"no rtf here",
    }
    for name, data in bad.items():
        (docs / name).write_bytes(data)
    done = rag("ingest", docs, data_dir=settings.data_dir, cwd=tmp_path, settings=settings)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert sorted(line.split(":", 1)[0] for line in lines) == sorted(
        f"failed  {docs / name}" for name in bad), done.stderr
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr
