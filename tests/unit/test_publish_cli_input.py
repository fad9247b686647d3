"""``syncbus publish`` on hostile lines: each bad line is refused by number with its
reason, and every other line of the file is still accepted (issue 22).

No broker is needed to accept: the publisher spools what it accepts, and an address
where nothing listens only leaves the accepted events spooled (exit code 1 because
lines were refused)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from syncbus.core.catalog import load_bus
from syncbus.core.fake import make_records
from syncbus.core.jsonconv import to_json
from syncbus.publisher.spool import Spool

ROOT = Path(__file__).resolve().parents[2]
NOWHERE = "127.0.0.1:9"  # discard port: nothing listens


def _line(record: dict[str, Any], **extra: Any) -> str:
    return json.dumps({"op": "CREATE", "after": record, **extra}, ensure_ascii=False)


def _run(tmp_path: Path, department: str, resource: str,
         lines: list[bytes | str]) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The command in its own process (it registers its metrics in the default registry)."""
    source = tmp_path / f"{resource}.jsonl"
    source.write_bytes(b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines) + b"\n")
    spool = tmp_path / f"{resource}.db"
    result = subprocess.run([
        sys.executable, "-m", "syncbus", "publish",
        "--as", department, "--resource", resource, "--file", str(source),
        "--spool", str(spool), "--bootstrap", NOWHERE, "--timeout", "0.2",
        "--streams", str(ROOT / "streams"), "--schemas", str(ROOT / "schemas"),
    ], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "Traceback" not in result.stderr, result.stderr
    return result, spool


def _refusals(output: str) -> dict[int, str]:
    found = {}
    for text in output.splitlines():
        if text.startswith("line ") and ": " in text:
            number, _, reason = text[len("line "):].partition(": ")
            found[int(number)] = reason
    return found


def test_out_of_range_numbers_are_refused_by_line_and_the_rest_goes_on(tmp_path: Path) -> None:
    bus = load_bus(ROOT / "streams", ROOT / "schemas")
    good = [to_json(r) for r in make_records(bus.resources["spatial.parcel"].schema, 3, seed=5)]
    area = json.dumps(good[1]["area_m2"])
    lines: list[bytes | str] = [
        _line(good[0]),
        _line(good[1], occurred_at=10**30),
        _line(good[1], occurred_at=-(10**30)),
        _line(good[1], occurred_at=True),
        _line(good[1]).replace(f'"area_m2": {area}', '"area_m2": NaN'),
        _line(good[1]).replace(f'"area_m2": {area}', '"area_m2": 1e400'),
        _line(good[1]).replace(f'"area_m2": {area}', f'"area_m2": {10**400}'),
        _line(good[1]).replace(f'"area_m2": {area}', f'"area_m2": 1{"0" * 5000}'),
        "[" * 100_000,
        _line(good[1]).encode().replace(b'"op"', b'"op\xff"'),
        _line(good[2], occurred_at="2026-12-04T10:00:00"),
    ]
    assert all(str(x) != _line(good[1]) for x in lines[4:8]), "the area was replaced"
    result, spool = _run(tmp_path, "js-zrzyt", "spatial.parcel", lines)
    refused = _refusals(result.stderr + result.stdout)
    assert sorted(refused) == list(range(2, 11)), result.stderr + result.stdout
    assert "occurred_at" in refused[2] and "occurred_at" in refused[3]
    assert "occurred_at" in refused[4]
    for number in (5, 6, 7):
        assert "area_m2" in refused[number], refused[number]
    assert "not JSON" in refused[8] and "not JSON" in refused[9]
    assert "not UTF-8" in refused[10]
    assert "accepted 2, rejected 9" in result.stderr + result.stdout
    assert result.returncode == 1
    kept = Spool(spool)
    try:
        assert kept.depth == 2, "the two good lines are spooled for the next run"
    finally:
        kept.close()


def test_decimals_beyond_their_precision_are_refused_by_line(tmp_path: Path) -> None:
    bus = load_bus(ROOT / "streams", ROOT / "schemas")
    good = [to_json(r) for r in make_records(bus.resources["legal.company"].schema, 2, seed=6)]
    lines: list[bytes | str] = [
        _line({**good[0], "registered_capital": 10**30}),
        _line({**good[0], "registered_capital": "1" + "0" * 16}),  # 17 + 2 digits > 18
        _line({**good[0], "registered_capital": 1e300}),
        _line({**good[1], "registered_capital": "9999999999999999.99"}),
    ]
    result, _ = _run(tmp_path, "js-scjgj", "legal.company", lines)
    refused = _refusals(result.stderr + result.stdout)
    assert sorted(refused) == [1, 2, 3], result.stderr + result.stdout
    assert all("registered_capital" in reason and "decimal(18, 2)" in reason
               for reason in refused.values()), refused
    assert "accepted 1, rejected 3" in result.stderr + result.stdout


def test_a_line_over_the_event_size_limit_is_refused_by_number(tmp_path: Path) -> None:
    bus = load_bus(ROOT / "streams", ROOT / "schemas")
    good = [to_json(r) for r in make_records(bus.resources["legal.company"].schema, 3, seed=7)]
    big = {**good[1], "business_scope": "经营范围" * 100_000}  # 1.2 MB of UTF-8
    result, _ = _run(tmp_path, "js-scjgj", "legal.company",
                     [_line(good[0]), _line(big), _line(good[2])])
    refused = _refusals(result.stderr + result.stdout)
    assert sorted(refused) == [2], result.stderr
    assert "over the limit of 1,000,000 bytes" in refused[2]
    assert "legal.company" in refused[2]
    assert "accepted 2, rejected 1" in result.stdout


def test_refused_events_are_queued_again_by_the_command(tmp_path: Path) -> None:
    spool_path = tmp_path / "legal.company.db"
    spool = Spool(spool_path, department="js-scjgj")
    meta = "id1\x1fCREATE\x1f320102\x1f\x1f1\x1f1\x1f1"
    spool.append("legal.company", [(b"k", b"\xc3\x01" + bytes(8) + b"v", meta)], 1, 1.0)
    spool.refuse([1], "TOPIC_AUTHORIZATION_FAILED", "Broker: Topic authorization failed", 2.0)
    spool.close()
    result = subprocess.run([
        sys.executable, "-m", "syncbus", "publish", "--as", "js-scjgj",
        "--resource", "legal.company", "--resend-refused", "--spool", str(spool_path),
        "--bootstrap", NOWHERE, "--timeout", "0.2",
        "--streams", str(ROOT / "streams"), "--schemas", str(ROOT / "schemas"),
    ], capture_output=True, text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert "queued 1 refused events again" in result.stderr, result.stderr
    assert result.returncode == 3, "queued, not yet confirmed: nothing listens there"
    kept = Spool(spool_path)
    try:
        assert kept.depth == 1 and kept.refused() == []
        assert kept.sequences() == {"legal.company": 1}
    finally:
        kept.close()
