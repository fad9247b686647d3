"""What the Publisher SDK refuses, and why, so the calling system can act on it.

A refused change is never half-sent: every error below is raised before the
change reaches the spool, except ``SpoolFull`` which is raised instead of
accepting more than the configured bound while the broker is unreachable.
"""

from __future__ import annotations

from syncbus.core.problems import FieldError


class PublishError(Exception):
    """Base class of everything the SDK refuses."""


class ChangeRejected(PublishError, ValueError):
    """A change that breaks its contract; ``errors`` names every bad field and why.

    ``index`` is the position of the change in a ``publish_many`` batch (0 for a
    single ``publish``), so a caller feeding a file can report its line.
    """

    def __init__(self, resource: str, errors: list[FieldError], index: int = 0) -> None:
        self.resource = resource
        self.errors = errors
        self.index = index
        detail = "; ".join(str(e) for e in errors)
        super().__init__(f"{resource}: change rejected: {detail}")


class NotPermitted(PublishError, PermissionError):
    """The department may not publish this resource (it is not the owner)."""


class UnknownResource(PublishError, KeyError):
    """The resource is not in the catalog; str() says which and what exists."""

    def __str__(self) -> str:
        return str(self.args[0])


class SpoolFull(PublishError):
    """The spool holds its bound of undelivered events: the broker has been
    unreachable for too long. Nothing of the refused batch was accepted; retry
    later or raise ``max_spooled``."""


class PublisherClosed(PublishError):
    """``publish`` after ``close()``."""
