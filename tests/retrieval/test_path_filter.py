"""How a path filter matches a stored (absolute) source: absolute globs the whole path,
relative globs its end, plain values a prefix."""

from __future__ import annotations

import os

import pytest

from retrieval.service import path_matches

SOURCE = "/home/ann/docs/reports/q3-report.pdf"


@pytest.mark.parametrize(("pattern", "matches"), [
    ("*report*", True),
    ("*.pdf", True),
    ("reports/*.pdf", True),
    ("./reports/*.pdf", True),
    ("q3-report.pdf", False),  # no glob: a prefix from the current folder
    ("q?-report.pdf", True),
    ("docs/*.pdf", True),  # * crosses folders, as in find -path
    ("ports/*.pdf", False),  # a relative glob's start is a folder's start
    ("*.docx", False),
    ("/home/ann/*", True),
    ("/srv/*report*", False),
    ("/home/ann/docs", True),
    ("/home/bob", False),
])
def test_a_path_filter(pattern: str, matches: bool) -> None:
    assert path_matches(SOURCE, pattern) is matches


def test_a_relative_prefix_is_taken_from_the_current_folder() -> None:
    here = os.getcwd()
    assert path_matches(os.path.join(here, "sub", "a.txt"), "sub")
    assert not path_matches("/elsewhere/sub/a.txt", "sub")
