"""The city's road segments: their configuration, the fused state of each (``state.py``, start
here), its change feed and the changes other workers commit.
"""
