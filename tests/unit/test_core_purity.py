"""The core must not import Kafka clients or Faust (docs/architecture.md, Layout)."""

from __future__ import annotations

import ast
from pathlib import Path

import syncbus.core

FORBIDDEN = {"confluent_kafka", "aiokafka", "faust", "kafka"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_kafka_import_under_core() -> None:
    root = Path(syncbus.core.__file__).parent
    modules = sorted(root.rglob("*.py"))
    assert len(modules) > 5
    offenders = {str(p.relative_to(root)): _imports(p) & FORBIDDEN for p in modules}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_catches_an_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import confluent_kafka\nfrom aiokafka import AIOKafkaConsumer\n")
    assert _imports(bad) & FORBIDDEN == {"confluent_kafka", "aiokafka"}
