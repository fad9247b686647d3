"""Two workarounds for slow spots under the router's hot path, until the core has them.

python-stdnum's ``cn.ric.validate`` finds a citizen ID's birth place by scanning
its numdb text database on every call (about 0.3 ms, half of the router's time
per resident event). The answer depends only on the region (first six digits)
and the birth year (next four, since codes are valid for periods of years), so
the router caches it per those ten digits. Same results, the same exceptions: a prefix
that raised is not cached, so it raises again. The lasting fix belongs in
``syncbus.core.validation``; until then ``install()`` applies it process-wide.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from fastavro import parse_schema
from stdnum.cn import ric

from syncbus.core.codec import Codec

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    original = ric.get_birth_place

    @lru_cache(maxsize=8192)
    def by_region_and_year(prefix: str) -> Any:
        return original(prefix + "0101" + "0000")

    def get_birth_place(number: str) -> Any:
        return by_region_and_year(ric.compact(number)[:10])

    ric.get_birth_place = get_birth_place
    _installed = True


class RouterCodec(Codec):
    """The core codec with fastavro's "already parsed" hint kept on every schema.

    ``Codec.register`` parses with ``_write_hint=False``, which makes fastavro's
    ``schemaless_writer``/``schemaless_reader`` parse the schema again on every
    call: half of each encode and decode. Same schemas, same bytes, same errors;
    the lasting fix belongs in ``syncbus.core.codec``.
    """

    def register(self, schema: Mapping[str, Any]) -> bytes:
        fp = super().register(schema)
        if fp not in self._hinted:
            self._parsed[fp] = parse_schema(copy.deepcopy(self._raw[fp]))
            self._hinted.add(fp)
        return fp

    def __init__(self) -> None:
        self._hinted: set[bytes] = set()
        super().__init__()
