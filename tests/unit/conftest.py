"""Shared fixtures of the unit tests: the shipped bus, and a copy to break."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from syncbus.core.catalog import Bus, load_bus

ROOT = Path(__file__).resolve().parents[2]
STREAMS = ROOT / "streams"
SCHEMAS = ROOT / "schemas"


@pytest.fixture(scope="session")
def bus() -> Bus:
    return load_bus(STREAMS, SCHEMAS)


@pytest.fixture
def bus_copy(tmp_path: Path) -> tuple[Path, Path]:
    """Writable copies of streams/ and schemas/ for a test to break."""
    streams, schemas = tmp_path / "streams", tmp_path / "schemas"
    shutil.copytree(STREAMS, streams)
    shutil.copytree(SCHEMAS, schemas)
    return streams, schemas
