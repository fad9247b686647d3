"""The router: Faust workers that route raw events to subscribers' share topics.

``engine`` does the work of a batch with no Kafka import (decode, validate,
route, mask, encode, dead letters, audit); ``app`` is the thin Faust adapter that
feeds it batches, produces its output with librdkafka and acks only after the
broker confirmed every record.
"""
