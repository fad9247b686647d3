"""The Publisher SDK: department systems publish their changes through it.

Validate, encode, spool durably, then produce idempotently to ``raw.<resource>``;
see :mod:`syncbus.publisher.sdk` for the guarantees and
:mod:`syncbus.publisher.spool` for what the spool survives.
"""

from syncbus.publisher.changes import Change
from syncbus.publisher.errors import (
    ChangeRejected,
    NotPermitted,
    PublisherClosed,
    PublishError,
    SpoolFull,
    UnknownResource,
)
from syncbus.publisher.sdk import Publisher
from syncbus.publisher.spool import SpoolLocked

__all__ = [
    "Change",
    "ChangeRejected",
    "NotPermitted",
    "PublishError",
    "Publisher",
    "PublisherClosed",
    "SpoolFull",
    "SpoolLocked",
    "UnknownResource",
]
