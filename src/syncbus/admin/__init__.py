"""Admin adapter: make a Kafka cluster match the bus definition (``syncbus apply``)."""
