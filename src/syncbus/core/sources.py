"""Reading the files an operator writes (``streams/``, ``schemas/``, secrets files).

Whatever is in them, reading either returns data or raises ``UnreadableInput``
naming the line (when there is one) and what is wrong, never a traceback of the
parser and never the file's content: the same reader serves the token secrets
file, whose lines are secrets. Callers add the file name and, where the content
is not secret, more detail.

YAML is read strictly: a key given twice in one mapping is an error (PyYAML keeps
the last silently, so a pasted ``grants: []`` at the end of a file would revoke
every grant above it), and a scalar that its type cannot hold (``2027-02-30``, an
integer of thousands of digits) is an error at its line.

API:
    UnreadableInput(reason, line=None)
    read_text(path) -> str                 UTF-8 text of a file
    load_yaml(text) -> Any                 strict YAML; errors carry a line
    load_json(text) -> Any                 JSON; errors carry a line
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


class UnreadableInput(ValueError):
    """A file that cannot be read or parsed; ``reason`` never quotes its content."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(f"line {line}: {reason}" if line is not None else reason)


def read_text(path: Path) -> str:
    """The file's text; a missing, unreadable or non-UTF-8 file is ``UnreadableInput``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UnreadableInput("file is missing") from None
    except OSError as exc:
        raise UnreadableInput(f"cannot read it: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UnreadableInput(f"not UTF-8 text (byte {exc.start}); save it as UTF-8",
                              line) from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and marks every bad scalar with its line."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: the base class says so, with its line
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, OverflowError) as exc:  # e.g. date(2027, 2, 30)
            raise yaml.constructor.ConstructorError(
                None, None, f"a {node.tag.rsplit(':', 1)[-1]} value out of range ({exc})",
                node.start_mark) from None


def _yaml_reason(exc: yaml.YAMLError) -> tuple[str, int | None]:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.context_mark or exc.problem_mark  # where the bad item began
        parts = [p for p in (exc.context, exc.problem) if p]
        return ": ".join(parts) or "not valid YAML", (mark.line + 1) if mark else None
    return "not valid YAML", None


def load_yaml(text: str) -> Any:
    """Parse YAML strictly; ``UnreadableInput`` with the line of the first error.

    The reason names the parser's finding (``found duplicate key 'grants'``) but not
    the text around it; the value of a bad scalar is the one thing it may repeat
    (callers reading secrets use only the line)."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        reason, line = _yaml_reason(exc)
        raise UnreadableInput(f"not valid YAML: {reason}", line) from None
    except RecursionError:
        raise UnreadableInput("not valid YAML: nested too deeply") from None


def load_json(text: str) -> Any:
    """Parse JSON; ``UnreadableInput`` with the line of the error and no content."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableInput(f"not valid JSON: {exc.msg} (column {exc.colno})",
                              exc.lineno) from None
    except RecursionError:
        raise UnreadableInput("not valid JSON: nested too deeply") from None
