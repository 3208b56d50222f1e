"""Model releases: publish a signed model (``registry.py``, start here), its rows, and its
delivery to devices in chunks.
"""
