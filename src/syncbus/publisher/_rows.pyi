"""Types of the Cython module ``_rows.pyx`` (see its docstring)."""

from collections.abc import Callable
from typing import Any

class NewStateWriter:
    def __init__(
        self,
        encode: Callable[[Any], bytes],
        change_type: type,
        source: str,
        resource: str,
        key_field: str,
        region_field: str,
        op_headers: dict[str, tuple[str, str]],
        fixed_headers: tuple[tuple[str, str], tuple[str, str]],
        fingerprint_header: tuple[str, str],
        header_names: tuple[str, str, str, str, str],
        sep: str,
    ) -> None: ...
    def write(
        self,
        changes: list[Any],
        start: int,
        event_ids: list[str],
        first_seq: int,
        published: int,
        rows: list[Any],
        accepted: list[str],
    ) -> int: ...

class DeliveryReport:
    def __init__(
        self, acked: list[int], failed: list[tuple[int, str, str]], spool_id: int
    ) -> None: ...
    def __call__(self, err: Any, msg: Any) -> None: ...

def send(
    produce: Callable[..., None],
    topic: str,
    rows: list[Any],
    first_id: int,
    acked: list[int],
    failed: list[tuple[int, str, str]],
    stop_on: tuple[type[BaseException], ...],
) -> int: ...

def mark_acked(
    bits: bytearray, first: int, end: int, ids: list[int], start: int
) -> tuple[int, int]: ...

def numbered(prefix: str, n: int) -> list[str]: ...
