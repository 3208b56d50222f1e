"""The one wire contract: protobuf messages (roadsense.v1) and MQTT topics."""

SCHEMA_VERSION = 1
"""Schema version every RoadSense message carries in ``schema_version``."""
