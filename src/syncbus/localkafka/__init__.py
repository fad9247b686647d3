"""A local Apache Kafka for development, tests and the demo (see :mod:`.broker`)."""
