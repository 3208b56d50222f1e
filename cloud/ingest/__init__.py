"""Telemetry ingest: MQTT shared subscription (``subscriber.py``, start here), decoding and
validation, probabilities to levels.
"""
