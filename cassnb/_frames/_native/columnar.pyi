from collections.abc import Sequence
from typing import Any

from typing_extensions import Buffer

ABI: int
K_SKIP: int
K_FIX1: int
K_FIX2: int
K_FIX4: int
K_FIX8: int
K_BOOL: int
K_DATE: int
K_UUID: int
K_UTF8: int
K_ASCII: int
K_BLOB: int
K_UUID_TEXT: int
K_UTF8_OBJ: int
K_ASCII_OBJ: int
K_BLOB_OBJ: int
K_UUID_OBJ: int
K_RAW: int
K_DATE_SECONDS: int

def scan(
    page: Buffer, offset: int, kinds: bytes, limit: int, /
) -> tuple[int, int, list[int], list[int]]: ...
def fill(
    page: Buffer,
    offset: int,
    kinds: bytes,
    rows: int,
    outs: Sequence[tuple[Any, ...] | None],
    first_row: int = 0,
    /,
) -> tuple[list[list[Any] | None], list[int]]: ...
def valid_utf8(data: Buffer, /) -> bool: ...
