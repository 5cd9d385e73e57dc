"""The upload check takes UTF-16 text without a byte-order mark, as the text loader does."""

from __future__ import annotations

import io

import pytest

from app.api.errors import ApiError
from app.api.uploads import check_content


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_passes_the_upload_check(encoding: str) -> None:
    data = "hello world\nThe ferry leaves at seven.\n".encode(encoding)
    assert check_content("notes.txt", io.BytesIO(data), len(data)) == "text"


def test_binary_in_a_txt_is_still_refused() -> None:
    data = b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4
    with pytest.raises(ApiError) as caught:
        check_content("notes.txt", io.BytesIO(data), len(data))
    assert caught.value.status == 415
