"""Types of the Cython module ``_avro_native.pyx`` (see its docstring)."""

from collections.abc import Callable, Mapping
from typing import Any

def compile_encoder(
    schema: Mapping[str, Any],
    prefix: bytes = b"",
    checks: Callable[[Mapping[str, Any]], Callable[[str], bool] | None] | None = None,
) -> Callable[[Any], bytes] | None: ...
def compile_decoder(
    schema: Mapping[str, Any],
) -> Callable[[bytes, int], tuple[dict[str, Any], int]] | None: ...
