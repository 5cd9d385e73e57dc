"""Control characters of names and text are shown as escapes, never sent to the terminal."""

from __future__ import annotations

from app.terminal import middle_truncated, printable, printable_text, shown_paths


def test_controls_c1_and_bidi_overrides_are_escaped() -> None:
    assert printable("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert printable("csi\x9b31m del\x7f") == "csi\\x9b31m del\\x7f"
    assert printable("cod\u202egnp.exe \u2066x\u2069") == "cod\\u202egnp.exe \\u2066x\\u2069"
    assert printable("two\nlines\r") == "two\\x0alines\\x0d"
    assert printable("plain — ünïcode [brackets].pdf") == "plain — ünïcode [brackets].pdf"


def test_text_keeps_its_lines_and_tabs() -> None:
    assert printable_text("one\n\ttwo\x1b]0;title\x07") == "one\n\ttwo\\x1b]0;title\\x07"


def test_a_long_name_loses_its_middle_not_its_ends() -> None:
    name = "/home/ann/projects/2024/quarterly-reports/final/q3-revenue-report.pdf"
    cut = middle_truncated(name, 30)
    assert len(cut) == 30 and "…" in cut
    assert cut.startswith("/home/ann") and cut.endswith("revenue-report.pdf")
    assert middle_truncated("short.pdf", 30) == "short.pdf"


def test_paths_are_shown_from_the_current_folder_or_their_common_one() -> None:
    assert shown_paths(["/w/docs/a.pdf", "/w/b.md"], "/w") == ("/w", ["docs/a.pdf", "b.md"])
    assert shown_paths(["/t/x/docs/a.pdf", "/t/x/b.md"], "/home") == (
        "/t/x", ["docs/a.pdf", "b.md"])
    assert shown_paths(["/t/x/only.pdf"], "/home") == ("/t/x", ["only.pdf"])
    assert shown_paths(["/a/1.txt", "/b/2.txt"], "/home") == ("", ["/a/1.txt", "/b/2.txt"])
