"""The device's side of a model rollout: the updater (``updater.py``, start here), download,
self-test, handover and the state kept across restarts.
"""
