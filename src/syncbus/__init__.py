"""syncbus: real-time data sharing between government departments on Apache Kafka.

The pure rules live in :mod:`syncbus.core` (no Kafka import there); the adapters
around it (publisher, router, subscriber, sink, admin, metrics, CLI, local Kafka)
are the only modules that talk to a broker.
"""

__version__ = "0.1.0"
