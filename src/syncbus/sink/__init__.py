"""The city sink: a subscriber's share kept as tables in its own SQLite or PostgreSQL."""

from syncbus.sink.sink import Sink, run_sink
from syncbus.sink.tables import table_name

__all__ = ["Sink", "run_sink", "table_name"]
