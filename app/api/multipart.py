"""The upload body, parsed as it streams in: python-multipart through Starlette's parser,
with a limit per file that refuses the upload at the first byte past it.

Starlette's own limits cover form fields and the count of files, not a file's size, so a
file over the limit used to be read whole (to a temporary file) before it was refused. Here
each file part is counted as its bytes arrive; past the limit the parse stops, the spooled
parts are closed (temporary files without a name: nothing is left on disk) and the route
answers 413 with `Connection: close`, so the client stops sending.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from starlette.datastructures import FormData, Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.api.errors import ApiError

FIELD = "files"
_FIELD_LIMIT = 64 * 1024  # a non-file part is refused anyway; this bounds what is read of it


class FileTooLargeError(MultiPartException):
    """A file part grew past the per-file limit."""

    def __init__(self, name: str, limit: int):
        super().__init__(f"'{name}' is over the limit of {limit / 2**20:g} MB")
        self.name = name


class LimitedMultiPartParser(MultiPartParser):
    """Starlette's multipart parser with `file_limit` bytes at most per file part."""

    def __init__(self, headers: Headers, stream: AsyncGenerator[bytes, None], *,
                 file_limit: int, max_files: int):
        super().__init__(headers, stream, max_files=max_files, max_fields=8,
                         max_part_size=_FIELD_LIMIT)
        self.file_limit = file_limit
        self._file_bytes = 0

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._file_bytes = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        file = self._current_part.file
        if file is not None:
            self._file_bytes += end - start
            if self._file_bytes > self.file_limit:
                raise FileTooLargeError(file.filename or "", self.file_limit)
        super().on_part_data(data, start, end)


async def read_files(headers: Headers, stream: AsyncGenerator[bytes, None], file_limit: int,
                     max_files: int) -> list[UploadFile]:
    """The uploaded files of a multipart body (field `files`), each within `file_limit`;
    ApiError (413 for a file too large, else 422) names what is wrong."""
    if not headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise ApiError(422, f"{FIELD}: send the files as multipart/form-data, each in a part "
                            f"named '{FIELD}'", param=FIELD)
    parser = LimitedMultiPartParser(headers, stream, file_limit=file_limit, max_files=max_files)
    try:
        form = await parser.parse()
    except FileTooLargeError as exc:
        raise ApiError(413, f"{FIELD}: {exc.message}", param=FIELD, code="file_too_large",
                       headers={"Connection": "close"}) from None
    except MultiPartException as exc:
        raise ApiError(422, _multipart_message(exc.message, max_files), param=FIELD,
                       code=_multipart_code(exc.message)) from None
    return _files_of(form)


def _files_of(form: FormData) -> list[UploadFile]:
    files: list[UploadFile] = []
    for name, value in form.multi_items():
        if not isinstance(value, UploadFile):
            form_close(form)
            raise ApiError(422, f"{FIELD}: the part '{name}' is not a file (it has no file "
                                f"name): send each file as a part named '{FIELD}' with its "
                                "file name", param=FIELD, code="not_a_file")
        if name != FIELD:
            form_close(form)
            raise ApiError(422, f"{FIELD}: unexpected part '{name}': send each file as a part "
                                f"named '{FIELD}'", param=FIELD)
        files.append(value)
    if not files:
        raise ApiError(422, f"{FIELD}: no file was sent", param=FIELD)
    return files


def form_close(form: FormData) -> None:
    for _, value in form.multi_items():
        if isinstance(value, UploadFile):
            value.file.close()


def _multipart_code(message: str) -> str:
    return "too_many_files" if message.startswith("Too many files") else "invalid_multipart"


def _multipart_message(message: str, max_files: int) -> str:
    if message.startswith("Too many files"):
        return f"{FIELD}: over the limit of {max_files} files per upload"
    if message.startswith("Missing boundary"):
        return f"{FIELD}: the multipart Content-Type has no boundary"
    return f"{FIELD}: the multipart body cannot be read ({message.rstrip('.')})"
