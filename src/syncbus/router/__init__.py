"""The router: Faust workers that route raw events to subscribers' share topics.

``engine`` does the work of a batch with no Kafka import (decode, validate,
route, mask, encode, dead letters, audit); ``app`` is the thin Faust adapter that
feeds it batches, produces its output with librdkafka and acks only after the
broker confirmed every record.
"""

# far above what a burst of junk from one bad publisher makes between good events,
# far below "the whole stream since the deploy": a router that fails everything stops.
# Here, not in ``engine``: the CLI shows it in ``--help`` without importing the engine.
DEFAULT_MAX_CONSECUTIVE_DEAD = 10_000

# A resync's pacing (``resync.Pacing``): records per chunk, and the rest after each
# chunk as a multiple of its own time. Measured there; here for ``--help`` as above.
RESYNC_CHUNK = 5000
RESYNC_REST = 0.0
