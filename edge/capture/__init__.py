"""Camera capture: one thread per stream holding the latest frame (``camera.py``, start here)
and the video readers behind it.
"""
