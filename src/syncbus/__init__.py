"""syncbus: real-time data sharing between government departments on Apache Kafka.

The pure rules live in :mod:`syncbus.core` (no Kafka import there); the adapters
around it (publisher, router, subscriber, sink, admin, metrics, CLI, local Kafka)
are the only modules that talk to a broker. ``syncbus.Publisher`` and
``syncbus.Subscriber`` are the two SDK entry points; they are imported on first
use so that ``import syncbus.core`` never loads a Kafka client.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Publisher", "Subscriber"]

_SDK = {"Publisher": "syncbus.publisher", "Subscriber": "syncbus.subscriber"}


def __getattr__(name: str) -> Any:
    if name in _SDK:
        import importlib

        return getattr(importlib.import_module(_SDK[name]), name)
    raise AttributeError(f"module 'syncbus' has no attribute {name!r}")
