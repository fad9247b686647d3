"""What is wrong with a bus definition, said so an operator can fix it.

A bus definition problem names its file and entry; a record problem
(``FieldError``) names the field path, because that is what the person fixing it
looks for. Loading collects every problem instead of stopping at the first one, so a
broken ``streams/`` folder is repaired in one pass, not one error per run.
"""

from __future__ import annotations

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
