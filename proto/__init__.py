"""The one wire contract: protobuf messages (roadsense.v1) and MQTT topics."""

SCHEMA_VERSION = 1
"""Schema version every RoadSense message carries in ``schema_version``, reports aside."""

REPORT_SCHEMA_VERSION = 2
"""Schema version of a CongestionReport: 2 carries the camera's measurements."""

REPORT_SCHEMA_VERSIONS = (1, 2)
"""CongestionReport versions the cloud accepts: 1 from devices that classify only."""
