"""Which path routes each resource, said once and counted per event.

The byte path (``_bytepath``, C) routes a resource only when it knows its schema
and every grant's plan; otherwise the whole resource runs on the Python path, about
5x slower. Nothing else would show that, so a new mask kind, field type or format
added only in Python would slow a resource silently. ``PathReport`` logs the path of
each resource once (and again when a policy changes it), with the byte path's
reason for declining; ``count`` gives the events of a batch per (resource, path)
for ``syncbus_router_events_total{resource,path}``.

API:
    BYTE, PYTHON: the path labels
    PathReport(): .declare(resource, path, why); .paths: resource -> (path, why)
    count_paths(topics, on_bytes, resource_of) -> Counter[(resource, path)]
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

log = logging.getLogger("syncbus.router")

BYTE = "byte"
PYTHON = "python"


class PathReport:
    """The path each resource was last declared on, and why; logs each change once."""

    def __init__(self) -> None:
        self.paths: dict[str, tuple[str, str]] = {}

    def declare(self, resource: str, path: str, why: str = "") -> None:
        if self.paths.get(resource) == (path, why):
            return
        self.paths[resource] = (path, why)
        if path == BYTE:
            log.info("resource %s is routed on the byte path (C)", resource)
        else:
            log.warning("resource %s is routed on the Python path, about 5x slower: %s",
                        resource, why)


def count_paths(
    topics: Iterable[str], on_bytes: Mapping[str, int], resource_of: Callable[[str], str]
) -> Counter[tuple[str, str]]:
    """Events per (resource, path): ``on_bytes[topic]`` of a topic's events were
    answered for by its byte route; the rest (declined, bad, or the whole resource)
    took the Python path."""
    paths: Counter[tuple[str, str]] = Counter()
    for topic, n in Counter(topics).items():
        resource, fast = resource_of(topic), on_bytes.get(topic, 0)
        if fast:
            paths[resource, BYTE] += fast
        if n > fast:
            paths[resource, PYTHON] += n - fast
    return paths
