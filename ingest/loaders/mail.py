"""E-mail with the standard library: a `.eml` message is its From/To/Cc/Date/Subject lines
and its text body (text/plain, else its HTML through the HTML loader); its attachments and a
mailbox's messages are handed on as `Attachment`s, ingested as documents of their own.

An attachment is neither decoded nor copied here: `Attachment.size` comes from its encoded
length, so the pipeline refuses an oversized one before `read()` decodes it. The stdlib
parser handles every line in Python: a 67 MB message with a 50 MB attachment took 4 s and
eight times its size in memory. So runs of base64 over 1 MiB (attachments, by far) are cut
out first in one regex pass (0.4 s on that message), a marker line left in their place.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path, PurePosixPath

from core.errors import LoadError
from ingest.loaders.base import Attachment, LoadedDocument, Section, short
from ingest.loaders.html import load_html

_HEADERS = ("From", "To", "Cc", "Date", "Subject")
_BASE64_RUN = re.compile(rb"\n[A-Za-z0-9+/=\r\n]{1048576,}")
_MARKER = re.compile(r"\s*RAGCUTBASE64RUN(\d+)\s*")
_MARKER_LINE = re.compile(rb"RAGCUTBASE64RUN(\d+)\r?\n")


class _Cutouts:
    """The message's bytes with its long base64 runs replaced by marker lines, and the runs
    themselves (views of the original bytes, decoded only on demand)."""

    def __init__(self, data: bytes):
        self.source = data
        self.runs: list[tuple[int, int]] = []
        self.data = _BASE64_RUN.sub(self._cut, data)

    def _cut(self, match: re.Match[bytes]) -> bytes:
        self.runs.append((match.start() + 1, match.end()))
        return b"\nRAGCUTBASE64RUN%d\n" % (len(self.runs) - 1)

    def run_of(self, part: EmailMessage) -> tuple[int, int] | None:
        payload = part.get_payload()
        found = _MARKER.fullmatch(payload) if isinstance(payload, str) else None
        return self.runs[int(found.group(1))] if found and int(found.group(1)) < len(self.runs) else None

    def size(self, run: tuple[int, int]) -> int:
        start, end = run
        breaks = self.source.count(b"\n", start, end) + self.source.count(b"\r", start, end)
        padding = self.source[max(start, end - 8):end].rstrip()[-2:].count(b"=")
        return (end - start - breaks) * 3 // 4 - padding

    def decode(self, run: tuple[int, int]) -> bytes:
        return base64.b64decode(memoryview(self.source)[run[0]:run[1]])

    def _run_bytes(self, marker: re.Match[bytes]) -> bytes:
        start, end = self.runs[int(marker.group(1))]
        return self.source[start:end]

    def restored(self, data: bytes) -> Attachment:
        """An attached message (bytes that may hold markers) with its runs put back when
        it is read; its size counts them."""
        runs = [self.runs[int(m.group(1))] for m in _MARKER_LINE.finditer(data)]
        size = len(data) + sum(end - start for start, end in runs)

        def read() -> bytes:
            return _MARKER_LINE.sub(self._run_bytes, data)

        return Attachment("", size, read)


def _parse(data: bytes, headers_only: bool = False) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data, headersonly=headers_only)
    assert isinstance(message, EmailMessage)  # policy.default builds EmailMessage objects
    return message


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # a malformed header costs that line, not the message
        return ""
    return " ".join(str(value).split()) if value is not None else ""


def _content(part: EmailMessage, cutouts: _Cutouts) -> str:
    run = cutouts.run_of(part)
    if run is not None:
        return cutouts.decode(run).decode(part.get_content_charset() or "utf-8", "replace")
    try:
        return str(part.get_content())
    except (LookupError, ValueError, AssertionError):  # unknown charset, broken encoding
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def _body(message: EmailMessage, cutouts: _Cutouts) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if not isinstance(part, EmailMessage):
        return ""
    text = _content(part, cutouts)
    if part.get_content_subtype() == "html":
        html = load_html(Path("body.html"), text.encode())
        return html.sections[0].text if html.sections else ""
    return text


def _encoded_size(part: EmailMessage) -> int:
    payload = part.get_payload()
    if not isinstance(payload, str):
        return len(part.as_bytes())
    if part.get("Content-Transfer-Encoding", "").strip().lower() == "base64":
        breaks = payload.count("\n") + payload.count("\r")
        return (len(payload) - breaks) * 3 // 4 - payload.rstrip()[-2:].count("=")
    return len(payload)


def _attachment(part: EmailMessage, number: int, cutouts: _Cutouts) -> Attachment:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        message = inner[0] if isinstance(inner, list) and inner else None
        subject = _header(message, "Subject") if isinstance(message, EmailMessage) else ""
        raw = message.as_bytes() if isinstance(message, EmailMessage) else b""
        inner_file = cutouts.restored(raw)
        return Attachment(_safe_name(subject or f"message-{number}") + ".eml", inner_file.size,
                          inner_file.read)
    name = part.get_filename() or ""
    if not name:
        ext = mimetypes.guess_extension(part.get_content_type()) or ".bin"
        name = f"attachment-{number}{ext}"
    run = cutouts.run_of(part)
    if run is not None:
        return Attachment(_safe_name(name), cutouts.size(run), lambda: cutouts.decode(run))

    def read() -> bytes:
        data = part.get_payload(decode=True)
        return data if isinstance(data, bytes) else b""

    return Attachment(_safe_name(name), _encoded_size(part), read)


def _given(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _safe_name(name: str) -> str:
    """A sender's file name as one path-free name (it becomes part of a source)."""
    name = PurePosixPath(name.replace("\\", "/")).name
    return "".join(c if c.isprintable() and c != "#" else "_" for c in name).strip() or "attachment"


def _unique(attachments: list[Attachment]) -> list[Attachment]:
    seen: dict[str, int] = {}
    out = []
    for a in attachments:
        n = seen[a.name] = seen.get(a.name, 0) + 1
        if n > 1:
            stem, dot, ext = a.name.rpartition(".")
            a = Attachment(f"{stem}-{n}.{ext}" if dot and stem else f"{a.name}-{n}", a.size, a.read)
        out.append(a)
    return out


def load_eml(path: Path, data: bytes) -> LoadedDocument:
    try:
        cutouts = _Cutouts(data)
        message = _parse(cutouts.data)
        lines = [f"{name}: {value}" for name in _HEADERS if (value := _header(message, name))]
        if not lines:
            raise LoadError("not an e-mail: no From, To, Date or Subject header")
        attachments = _unique([_attachment(p, n, cutouts) for n, p in enumerate(
            (p for p in message.iter_attachments() if isinstance(p, EmailMessage)), start=1)])
        body = _body(message, cutouts)
    except LoadError:
        raise
    except Exception as exc:  # the parser is lenient; what still fails is a broken structure
        raise LoadError(f"corrupt e-mail: {short(exc)}") from None
    if attachments:
        lines.append("Attachments: " + ", ".join(a.name for a in attachments))
    text = "\n".join(lines) + "\n\n" + body
    return LoadedDocument(title=_header(message, "Subject"), type="email",
                          sections=[Section(text)], attachments=attachments)


# mbox: each message starts at a line "From <sender> <date>". The stdlib's mailbox.mbox finds
# them by that same rule but only reads a file by path; the loaders get bytes.
_FROM_LINE = re.compile(rb"^From [^\r\n]*\r?\n", re.MULTILINE)
_ESCAPED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)  # mboxrd quoting of body lines
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def load_mbox(path: Path, data: bytes) -> LoadedDocument:
    starts = list(_FROM_LINE.finditer(data))
    if not starts or data[:starts[0].start()].strip():
        raise LoadError("corrupt mbox: it does not start with a 'From ' line")
    index, attachments = [], []
    for number, match in enumerate(starts, start=1):
        end = starts[number].start() if number < len(starts) else len(data)
        raw = _ESCAPED_FROM.sub(rb"\1", data[match.end():end])
        try:
            end_of_head = _HEADER_END.search(raw)
            head = _parse(raw[:end_of_head.start()] if end_of_head else raw, headers_only=True)
            about = " · ".join(v for v in (_header(head, "Date"), _header(head, "From"),
                                           _header(head, "Subject")) if v)
        except Exception:  # its own document reports what is wrong with it
            about = ""
        index.append(f"{number}. {about or '(no headers)'}")
        attachments.append(Attachment(f"message-{number}.eml", len(raw), _given(raw)))
    text = f"Mailbox of {len(starts)} messages:\n" + "\n".join(index)
    return LoadedDocument(title=path.stem, type="mbox", sections=[Section(text)],
                          attachments=attachments)
