"""The pure core: catalog, regions, policy, masking, validation and codec.

Nothing under this package may import confluent_kafka, aiokafka or faust; a unit
test walks the package and enforces it.
"""
