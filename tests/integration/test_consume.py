"""``syncbus consume``: one JSON object per line, stopping after --max or --timeout."""

from __future__ import annotations

import json
import uuid
from typing import Any

from click.testing import CliRunner

from syncbus.cli import main
from syncbus.core.fake import make_records
from tests.subscriber_helpers import ShareProducer


def test_consume_prints_json_lines_and_stops_after_max(kafka: Any) -> None:
    sub_id = f"test.c{uuid.uuid4().hex[:10]}"
    share = ShareProducer(kafka.bootstrap, sub_id, clearance="L2")
    records = make_records("population.resident", 3, seed=41)
    ids = share.send(records)
    share.send(records[:1], op="DELETE")
    args = [
        "consume",
        "--as",
        sub_id,
        "--resource",
        "population.resident",
        "--from-beginning",
        "--bootstrap",
        kafka.bootstrap,
    ]
    result = CliRunner().invoke(main, [*args, "--json", "--max", "3"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["event_id"] for line in lines] == ids
    first = lines[0]
    assert first["op"] == "CREATE" and first["key"] == records[0]["id_number"]
    assert first["region"] == records[0]["region"] and first["before"] is None
    assert first["after"]["birth_date"] is None or isinstance(first["after"]["birth_date"], str)
    assert first["after"]["registered_on"] == records[0]["registered_on"].isoformat()

    # human format, and --timeout ends the wait once all four were shown
    result = CliRunner().invoke(main, [*args, "--timeout", "3"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 4
    assert lines[3].split()[2:4] == ["DELETE", "population.resident"]
    assert "苏州市" in lines[0] or "南京市" in lines[0] or "无锡市" in lines[0]
