"""What is wrong with a bus definition, said so an operator can fix it.

A bus definition problem names its file and entry; a record problem
(``FieldError``) names the field path, because that is what the person fixing it
looks for. Loading collects every problem instead of stopping at the first one, so a
broken ``streams/`` folder is repaired in one pass, not one error per run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One defect: the file it is in, the entry within it, and what is wrong."""

    file: str
    entry: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.entry}: {self.message}"


class BusDefinitionError(ValueError):
    """The bus definition is invalid; ``problems`` lists every defect found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class FieldError:
    """One bad field of a record: dotted path (``after.id_number``) and reason."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class ValidationError(ValueError):
    """A record that breaks its schema; ``errors`` has one entry per bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


_PARAM_PASSWORD = re.compile(r"(?P<head>(?:^|[?&\s])password=)[^&\s]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` as it may be printed: the password of ``scheme://user:password@host``, of a
    ``?password=`` query parameter and of a ``password=`` connection string become ``***``.
    Every message, log line and exception that shows a database URL shows this."""
    scheme, sep, rest = url.partition("://")
    if sep:
        end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
        userinfo, at, host = rest[:end].rpartition("@")
        if at and ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            url = f"{scheme}://{user}:***@{host}{rest[end:]}"
    return _PARAM_PASSWORD.sub(r"\g<head>***", url)
