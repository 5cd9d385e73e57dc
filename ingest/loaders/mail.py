"""E-mail with the standard library: a `.eml` message is its From/To/Cc/Date/Subject lines
and its text body (text/plain, else its HTML through the HTML loader); its attachments and a
mailbox's messages are handed on as `Attachment`s, ingested as documents of their own.

An attachment is neither decoded nor copied here: `Attachment.size` comes from its encoded
length, so the pipeline refuses an oversized one before `read()` decodes it.
"""

from __future__ import annotations

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


def _content(part: EmailMessage) -> str:
    try:
        return str(part.get_content())
    except (LookupError, ValueError, AssertionError):  # unknown charset, broken encoding
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if not isinstance(part, EmailMessage):
        return ""
    text = _content(part)
    if part.get_content_subtype() == "html":
        html = load_html(Path("body.html"), text.encode())
        return html.sections[0].text if html.sections else ""
    return text


def _encoded_size(part: EmailMessage) -> int:
    payload = part.get_payload()
    if not isinstance(payload, str):
        return len(part.as_bytes())
    if part.get("Content-Transfer-Encoding", "").strip().lower() == "base64":
        return len(payload) * 3 // 4
    return len(payload)


def _attachment(part: EmailMessage, number: int) -> Attachment:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        message = inner[0] if isinstance(inner, list) and inner else None
        subject = _header(message, "Subject") if isinstance(message, EmailMessage) else ""
        raw = message.as_bytes() if isinstance(message, EmailMessage) else b""
        return Attachment(_safe_name(subject or f"message-{number}") + ".eml", len(raw),
                          _given(raw))
    name = part.get_filename() or ""
    if not name:
        ext = mimetypes.guess_extension(part.get_content_type()) or ".bin"
        name = f"attachment-{number}{ext}"

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
        message = _parse(data)
        lines = [f"{name}: {value}" for name in _HEADERS if (value := _header(message, name))]
        if not lines:
            raise LoadError("not an e-mail: no From, To, Date or Subject header")
        attachments = _unique([_attachment(p, n) for n, p in enumerate(
            (p for p in message.iter_attachments() if isinstance(p, EmailMessage)), start=1)])
        body = _body(message)
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


def load_mbox(path: Path, data: bytes) -> LoadedDocument:
    starts = list(_FROM_LINE.finditer(data))
    if not starts or data[:starts[0].start()].strip():
        raise LoadError("corrupt mbox: it does not start with a 'From ' line")
    index, attachments = [], []
    for number, match in enumerate(starts, start=1):
        end = starts[number].start() if number < len(starts) else len(data)
        raw = _ESCAPED_FROM.sub(rb"\1", data[match.end():end])
        try:
            head = _parse(raw, headers_only=True)
            about = " · ".join(v for v in (_header(head, "Date"), _header(head, "From"),
                                           _header(head, "Subject")) if v)
        except Exception:  # its own document reports what is wrong with it
            about = ""
        index.append(f"{number}. {about or '(no headers)'}")
        attachments.append(Attachment(f"message-{number}.eml", len(raw), _given(raw)))
    text = f"Mailbox of {len(starts)} messages:\n" + "\n".join(index)
    return LoadedDocument(title=path.stem, type="mbox", sections=[Section(text)],
                          attachments=attachments)
