"""Measuring the road: a report window's figures per camera (``window.py``, start here),
vehicles followed and stopped or moving (``tracking.py``), the road zone, occupancy and
counting line (``zone.py``), and the evidence still (``still.py``). The level rule they
feed is shared with the evaluation: ``roadsense.models.detection.rule``."""
