"""The forecast job (``job.py``, start here) and the city feeds of observations and weather it
learns from.
"""
