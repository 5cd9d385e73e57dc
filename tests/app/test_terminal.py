"""Control characters of names and text are shown as escapes, never sent to the terminal."""

from __future__ import annotations

from app.terminal import printable, printable_text


def test_controls_c1_and_bidi_overrides_are_escaped() -> None:
    assert printable("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert printable("csi\x9b31m del\x7f") == "csi\\x9b31m del\\x7f"
    assert printable("cod\u202egnp.exe \u2066x\u2069") == "cod\\u202egnp.exe \\u2066x\\u2069"
    assert printable("two\nlines\r") == "two\\x0alines\\x0d"
    assert printable("plain — ünïcode [brackets].pdf") == "plain — ünïcode [brackets].pdf"


def test_text_keeps_its_lines_and_tabs() -> None:
    assert printable_text("one\n\ttwo\x1b]0;title\x07") == "one\n\ttwo\\x1b]0;title\\x07"
